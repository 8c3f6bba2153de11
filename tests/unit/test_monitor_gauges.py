"""The gauges from counters (rates, latency percentiles), crash loops from the supervisor's
restarts, and etcd quorum levels: the pure decisions, without processes."""

from __future__ import annotations

import pytest

from spofless.monitor import CrashLoops, GaugeMeter, QuorumWatch, histogram_quantile, lb_load
from spofless.monitor._gauges import LoadCounters, ProcessSample
from spofless.monitor._procs import Supervised
from spofless.topology import load_topology_text

LB_METRICS = """\
# TYPE spofless_lb_responses_total counter
spofless_lb_responses_total{backend="web-0",code="2xx"} 90.0
spofless_lb_responses_total{backend="web-0",code="5xx"} 10.0
spofless_lb_responses_total{backend="web-1",code="2xx"} 100.0
# TYPE spofless_lb_request_duration_seconds histogram
spofless_lb_request_duration_seconds_bucket{backend="web-0",le="0.01"} 50.0
spofless_lb_request_duration_seconds_bucket{backend="web-0",le="0.1"} 100.0
spofless_lb_request_duration_seconds_bucket{backend="web-0",le="+Inf"} 100.0
spofless_lb_request_duration_seconds_count{backend="web-0"} 100.0
spofless_lb_request_duration_seconds_sum{backend="web-0"} 2.0
spofless_lb_request_duration_seconds_bucket{backend="web-1",le="0.01"} 100.0
spofless_lb_request_duration_seconds_bucket{backend="web-1",le="0.1"} 100.0
spofless_lb_request_duration_seconds_bucket{backend="web-1",le="+Inf"} 100.0
spofless_lb_request_duration_seconds_count{backend="web-1"} 100.0
spofless_lb_request_duration_seconds_sum{backend="web-1"} 0.5
"""


def test_a_load_balancer_s_metrics_summed_over_backends() -> None:
    load = lb_load(LB_METRICS)
    assert load.responses == 200
    assert load.bounds == (0.01, 0.1)
    assert load.buckets == (150, 50, 0)


def test_histogram_quantile_interpolates_as_prometheus_does() -> None:
    bounds, counts = (0.01, 0.1, 1.0), (50, 40, 10, 0)
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.01)
    assert histogram_quantile(0.25, bounds, counts) == pytest.approx(0.005)
    assert histogram_quantile(0.7, bounds, counts) == pytest.approx(0.01 + 0.09 * 0.5)
    assert histogram_quantile(0.99, bounds, counts) == pytest.approx(0.1 + 0.9 * 0.9)
    assert histogram_quantile(0.99, bounds, (0, 0, 0, 5)) == 1.0  # above every bound
    assert histogram_quantile(0.5, bounds, (0, 0, 0, 0)) is None


def test_rates_and_percentiles_come_from_two_readings() -> None:
    meter = GaugeMeter()
    first = LoadCounters(1000, (0.01, 0.1), (500, 500, 0))
    assert meter.sample("lb/0", 100.0, load=first, process=ProcessSample(5.0, 1e6)) == {
        "memory": 1e6  # no rate from one reading
    }
    later = LoadCounters(1500, (0.01, 0.1), (500, 1000, 0))  # the last 500 all slow
    got = meter.sample("lb/0", 110.0, load=later, process=ProcessSample(11.2, 2e6))
    assert got["requests"] == pytest.approx(50.0)
    assert got["cpu"] == pytest.approx(0.62)
    assert got["memory"] == 2e6
    assert 0.01 < got["latency_p50"] < got["latency_p99"] <= 0.1


def test_a_counter_that_went_back_gives_no_rate() -> None:
    meter = GaugeMeter()
    meter.sample("lb/0", 0.0, load=LoadCounters(900, (1.0,), (900, 0)), process=None)
    got = meter.sample("lb/0", 10.0, load=LoadCounters(20, (1.0,), (20, 0)))  # restarted
    assert got == {}
    got = meter.sample("lb/0", 20.0, load=LoadCounters(120, (1.0,), (120, 0)))
    assert got["requests"] == pytest.approx(10.0)
    meter.sample("db/1", 0.0, lag=4096)
    assert meter.sample("db/1", 10.0, lag=0) == {"lag": 0.0}


def sup(restarts: int, state: str = "up") -> Supervised:
    return Supervised(state, restarts, (123,), last_exit="exit status 1")


def test_a_crash_loop_is_one_event_and_ends_after_a_quiet_window() -> None:
    loops = CrashLoops("monitor/0", restarts=3, window=60.0)
    assert loops.observe("web/0", sup(5), 0.0) == []  # the baseline: nothing happened
    assert loops.observe("web/0", sup(6), 10.0) == []
    assert loops.observe("web/0", sup(7), 20.0) == []
    (event,) = loops.observe("web/0", sup(8, "restarting"), 30.0)
    assert event.kind == "crash_loop" and event.severity == "error"
    assert event.message == (
        "web/0 is in a crash loop: restarted 3 times within 60s (last exit: exit status 1)"
    )
    assert loops.looping("web/0")
    assert loops.observe("web/0", sup(9), 40.0) == []  # still looping: no new event
    assert loops.observe("web/0", sup(9), 95.0) == []  # 55 s quiet: not a window yet
    (ended,) = loops.observe("web/0", sup(9), 101.0)
    assert ended.kind == "crash_loop_ended" and not loops.looping("web/0")


def test_slow_restarts_are_not_a_loop_and_a_new_stack_is_a_new_baseline() -> None:
    loops = CrashLoops("monitor/0", restarts=3, window=60.0)
    for i in range(10):
        assert loops.observe("web/0", sup(i), i * 31.0) == []  # two per window at most
    assert loops.observe("web/0", sup(0), 400.0) == []  # `up` again: counts from 0
    assert loops.observe("web/0", sup(2), 401.0) == []


def test_a_supervisor_that_gave_up_is_reported_once() -> None:
    loops = CrashLoops("monitor/0", restarts=3, window=60.0)
    (event,) = loops.observe_all({"web/1": sup(4, "failed")}, 0.0)
    assert (event.kind, event.severity, event.data["gave_up"]) == ("crash_loop", "critical", True)
    assert "stopped restarting it" in event.message
    assert loops.observe_all({"web/1": sup(4, "failed")}, 5.0) == []
    assert loops.observe_all({}, 6.0) == []  # the stack went down: forgotten
    assert not loops.looping("web/1")


ETCD = """\
name: shop
security: {tls: false}
components:
  etcd: {kind: etcd, instances: %d, port: 2379, peer_port: 2479}
  monitor: {kind: monitor, instances: 2, port: 9600}
entry: [etcd]
"""


def states(n: int, down: set[int]) -> dict[str, str]:
    return {f"etcd/{i}": "down" if i in down else "up" for i in range(n)}


def test_one_member_of_three_lost_is_quorum_at_risk_then_resolved() -> None:
    watch = QuorumWatch("monitor/0", load_topology_text(ETCD % 3))
    assert watch.update({**states(3, set()), "etcd/2": "unknown"}, 0.0) == []  # not seen yet
    assert watch.update(states(3, set()), 1.0) == []
    (event,) = watch.update(states(3, {1}), 2.0)
    assert (event.kind, event.severity, event.subject) == ("etcd_quorum_at_risk", "error", "etcd")
    assert event.message == (
        "etcd: 2 of 3 members up (etcd/1 lost): quorum at risk, losing one more stops it"
    )
    assert event.data["margin"] == 0
    assert watch.update(states(3, {1}), 3.0) == []  # once
    (lost,) = watch.update(states(3, {0, 1}), 4.0)
    assert (lost.kind, lost.severity) == ("etcd_quorum_lost", "critical")
    (better,) = watch.update(states(3, {1}), 5.0)
    assert (better.kind, better.severity) == ("etcd_quorum_resolved", "info")
    (back,) = watch.update(states(3, set()), 6.0)
    assert back.kind == "etcd_quorum_resolved" and back.message == "etcd: all 3 members up again"


def test_five_members_lose_one_before_quorum_is_at_risk() -> None:
    watch = QuorumWatch("monitor/0", load_topology_text(ETCD % 5))
    watch.update(states(5, set()), 0.0)
    (event,) = watch.update(states(5, {4}), 1.0)
    assert event.kind == "etcd_member_lost" and "can lose 1 more" in event.message
    (event,) = watch.update(states(5, {3, 4}), 2.0)
    assert event.kind == "etcd_quorum_at_risk"


def test_a_flapping_member_is_not_up_for_the_quorum() -> None:
    watch = QuorumWatch("monitor/0", load_topology_text(ETCD % 3))
    watch.update(states(3, set()), 0.0)
    (event,) = watch.update({**states(3, set()), "etcd/2": "flapping"}, 1.0)
    assert event.kind == "etcd_quorum_at_risk" and "(etcd/2 lost)" in event.message
