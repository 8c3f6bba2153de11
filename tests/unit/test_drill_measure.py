"""The drill's pure parts: outage windows, detection from status, events, RPO, the
assertion language, target resolution, the plans and the history's trend."""

from __future__ import annotations

import random

import pytest

from spofless.drill.assertions import AssertionSyntaxError, expectations, parse_assertion
from spofless.drill.errors import DrillError
from spofless.drill.faults import describe, resolve_targets
from spofless.drill.history import sparkline, trend
from spofless.drill.measure import (
    EventTracker,
    InstanceView,
    Outcome,
    Snapshot,
    detect_and_recover,
    error_rate_over,
    outage_window,
    outage_window_through,
    rpo,
)
from spofless.drill.plans import analysis_plan, fault, only_elements, random_plan, scenario_plan
from spofless.drill.schedule import draw_schedule
from spofless.topology import load_topology_text


def stream(spec: str, step: float = 0.1) -> list[Outcome]:
    """'..xx..' -> outcomes every `step` s (each taking 0.01 s), x a failure."""
    return [Outcome(i * step, i * step + 0.01, c == ".") for i, c in enumerate(spec)]


def test_outage_window_from_last_success_before_to_first_after() -> None:
    outs = stream("....xxx....")  # failures end at 0.41, 0.51, 0.61
    w = outage_window(outs, fault_at=0.35, until=10.0, slow=0.5)
    assert (w.errors, w.requests, w.recovered) == (3, 7, True)
    assert w.last_ok_before == pytest.approx(0.31) and w.first_ok_after == pytest.approx(0.71)
    assert w.outage == pytest.approx(0.4)
    assert w.error_rate == pytest.approx(3 / 7)


def test_a_stream_that_never_recovers_is_out_until_the_end_of_the_period() -> None:
    w = outage_window(stream("..xxxx"), fault_at=0.15, until=2.0, slow=0.5)
    assert not w.recovered and w.first_ok_after is None
    assert w.outage == pytest.approx(2.0 - 0.11)


def test_a_stall_without_errors_counts_only_past_the_slow_bound() -> None:
    outs = [Outcome(0.0, 0.01, True), Outcome(0.1, 1.3, True), Outcome(1.4, 1.41, True)]
    w = outage_window(outs, fault_at=0.05, until=5.0, slow=0.5)
    assert w.errors == 0 and w.outage == pytest.approx(1.29)
    assert w.max_latency == pytest.approx(1.2)
    assert outage_window(stream("....."), 0.15, 5.0, 0.5).outage == 0.0


def test_faults_after_the_period_do_not_count() -> None:
    w = outage_window(stream("....x....xx"), fault_at=0.35, until=0.8, slow=0.5)
    assert w.errors == 1 and w.outage == pytest.approx(0.2)


def test_a_fault_inside_an_outage_does_not_cut_it_short() -> None:
    # A crash at 0.35; a `when:` fault at 0.45 fires on the hand-over it caused; the
    # stream fails until 0.8: the crash's window carries on to the first success.
    outs = stream("....xxxxx....")
    w = outage_window_through(outs, fault_at=0.35, bounds=[0.45, 5.0], slow=0.5)
    assert w.recovered and w.errors == 5
    assert w.first_ok_after == pytest.approx(0.91) and w.outage == pytest.approx(0.6)
    # Recovered before the next fault: its period ends there, as before.
    outs = stream("....x....xx..")
    w = outage_window_through(outs, fault_at=0.35, bounds=[0.8, 5.0], slow=0.5)
    assert w.errors == 1 and w.outage == pytest.approx(0.2)


def test_error_rate_over_a_recent_span() -> None:
    assert error_rate_over(stream("..xx"), now=0.4, span=0.25) == (1.0, 2)
    assert error_rate_over([], 1.0, 1.0) == (0.0, 0)


def snap(at: float, whole: bool = True, **inst: tuple[str, str | None, int]) -> Snapshot:
    views = {
        name.replace("_", "/"): InstanceView(state, role, pid, 0)
        for name, (state, role, pid) in inst.items()
    }
    return Snapshot(at, views, whole)


def test_detection_and_recovery_from_status_snapshots() -> None:
    snaps = [
        snap(0.0, db_0=("up", "primary", 10), db_1=("up", "replica", 11)),
        snap(1.0, db_0=("up", "primary", 10), db_1=("up", "replica", 11)),
        snap(1.3, False, db_0=("restarting", None, None), db_1=("up", "replica", 11)),
        snap(4.0, False, db_0=("up", "replica", 12), db_1=("up", "primary", 11)),
        snap(6.0, True, db_0=("up", "replica", 12), db_1=("up", "primary", 11)),
    ]
    d = detect_and_recover(snaps, ["db/0"], fault_at=1.1, fault_end=1.1, until=20.0)
    assert d.detect == pytest.approx(0.2) and d.seen == "db/0 restarting"
    assert d.recover == pytest.approx(4.9)
    # A fault the status never shows: neither detected nor recovered.
    same = [snap(0.0, db_0=("up", "primary", 1)), snap(2.0, db_0=("up", "primary", 1))]
    assert detect_and_recover(same, ["db/0"], 1.0, 1.0, 5.0).detect is None
    # A role moving within the target's component shows a fault on the old primary too.
    moved = [snaps[0], snap(2.0, db_0=("up", "primary", 10), db_1=("up", "primary", 11))]
    assert detect_and_recover(moved, ["db/0"], 1.0, 1.0, 5.0).seen == "db/1 primary"


def test_events_from_snapshot_to_snapshot() -> None:
    a = snap(0.0, db_0=("up", "primary", 10), db_1=("up", "replica", 11), lb_0=("up", None, 5))
    b = snap(0.1, db_0=("restarting", None, None), db_1=("up", "replica", 11), lb_0=("up", None, 6))
    c = snap(0.2, db_0=("up", "replica", 12), db_1=("up", "primary", 11), lb_0=("up", None, 6))
    events = EventTracker()
    assert events.update(a) == []
    assert [e.key for e in events.update(b)] == ["db.down", "lb.restart"]
    # No primary in b: the failover is seen against the last primary, db/0.
    seen = events.update(c)
    assert [e.key for e in seen] == ["db.up", "db.restart", "db.role_change"]
    assert seen[2].detail == "db/0 -> db/1"
    assert events.update(c) == []


def pg(
    at: float, lags: dict[str, int | None], switchovers: frozenset[str] = frozenset()
) -> Snapshot:
    views = {
        n: InstanceView("up", "primary" if lag is None else "replica", 1, 0, lag)
        for n, lag in lags.items()
    }
    return Snapshot(at, views, True, switchovers)


def test_replica_lag_fires_when_it_goes_above_each_bound() -> None:
    events = EventTracker({"db": [1024, 1 << 20]})
    keys = lambda snap: [e.key for e in events.update(snap)]  # noqa: E731
    assert keys(pg(0.0, {"db/0": None, "db/1": 0, "db/2": 10})) == []
    got = events.update(pg(0.1, {"db/0": None, "db/1": 0, "db/2": 2048}))
    assert [(e.key, e.detail) for e in got] == [("db.replica_lag>1024", "db/2 lags 2.0 kB")]
    assert keys(pg(0.2, {"db/0": None, "db/1": 5000, "db/2": 2048})) == []  # still above
    assert keys(pg(0.3, {"db/0": None, "db/1": 3 << 20, "db/2": 0})) == ["db.replica_lag>1048576"]
    assert keys(pg(0.4, {"db/0": None, "db/1": 0, "db/2": 0})) == []
    assert keys(pg(0.5, {"db/0": None, "db/1": 0, "db/2": 4096})) == ["db.replica_lag>1024"]
    # Above the bound from the first look on: seen at once.
    first = EventTracker({"db": [1024]})
    assert [e.key for e in first.update(pg(0.0, {"db/0": None, "db/1": 9999}))] == [
        "db.replica_lag>1024"
    ]


def test_a_switchover_request_appearing_is_an_event() -> None:
    events = EventTracker()
    lags: dict[str, int | None] = {"db/0": None, "db/1": 0}
    assert events.update(pg(0.0, lags)) == []
    (e,) = events.update(pg(0.1, lags, frozenset({"db"})))
    assert (e.key, e.detail) == ("db.switchover", "a switchover of db requested")
    assert events.update(pg(0.2, lags, frozenset({"db"}))) == []  # in progress: once
    assert events.update(pg(0.3, lags)) == []


def test_the_vip_leaving_its_holder_is_a_handover() -> None:
    def lb(at: float, holder: str | None) -> Snapshot:
        views = {
            n: InstanceView("up", "vip-holder" if n == holder else None, 1, 0)
            for n in ("lb/0", "lb/1")
        }
        return Snapshot(at, views, True)

    events = EventTracker()
    assert events.update(lb(0.0, "lb/0")) == []
    assert events.update(lb(0.1, "lb/0")) == []
    (e,) = events.update(lb(0.2, None))  # released; nobody holds it yet
    assert (e.key, e.detail) == ("lb.vip_handover", "the VIP left lb/0: none holds it yet")
    got = {x.key: x.detail for x in events.update(lb(0.3, "lb/1"))}
    assert "lb.vip_handover" not in got  # the same hand-over, completed
    assert got["lb.role_change"] == "lb/0 -> lb/1"
    (e,) = [x for x in events.update(lb(0.4, "lb/0")) if x.key == "lb.vip_handover"]
    assert e.detail == "the VIP left lb/1: lb/0 holds it"


def test_with_one_vip_per_region_each_region_holder_leaving_is_a_handover() -> None:
    def lb(at: float, *holders: str) -> Snapshot:
        views = {
            n: InstanceView("up", "vip-holder" if n in holders else None, 1, 0)
            for n in ("lb/0", "lb/1", "lb/2")
        }
        return Snapshot(at, views, True)

    events = EventTracker()
    assert events.update(lb(0.0, "lb/0", "lb/2")) == []
    assert events.update(lb(0.1, "lb/0", "lb/2")) == []  # two holders: no flapping
    (e,) = [x for x in events.update(lb(0.2, "lb/2")) if x.key == "lb.vip_handover"]
    assert e.detail == "the VIP left lb/0: lb/2 holds it"
    got = {x.key for x in events.update(lb(0.3, "lb/1", "lb/2"))}
    assert "lb.vip_handover" not in got  # the same hand-over, completed


def test_a_load_balancer_marking_a_backend_down_is_an_event() -> None:
    def lb(at: float, **states: str) -> Snapshot:
        backends = {"lb/0": {"web/0": "up", **{k.replace("_", "/"): v for k, v in states.items()}}}
        return Snapshot(at, {"lb/0": InstanceView("up", None, 1, 0)}, True, frozenset(), backends)

    events = EventTracker()
    assert events.update(lb(0.0, web_1="up", web_2="down")) == []
    assert events.update(lb(0.1, web_1="up", web_2="up")) == []  # coming up is not it
    (e,) = events.update(lb(0.2, web_1="ejected", web_2="up"))
    assert (e.key, e.detail) == ("lb.backend_down", "lb/0 marked web/1 ejected")
    assert events.update(lb(0.3, web_1="ejected", web_2="up")) == []


def test_rpo_in_writes_and_seconds() -> None:
    r = rpo([4.5, 4.9, 12.0], fault_times=[5.0, 12.5])
    assert r.lost_writes == 3 and r.seconds == pytest.approx(0.5)
    assert r.by_fault == {0: 2, 1: 1}
    assert rpo([], [1.0]).seconds == 0.0


def test_the_assertion_language() -> None:
    summary = {"lost_writes": 0, "rto": 3.2, "errors": 4, "detect": None}
    assert parse_assertion("lost_writes == 0").holds(summary)
    assert parse_assertion("rto < 5s").holds(summary)
    assert not parse_assertion("rto<3200ms").holds(summary)
    assert parse_assertion("errors >= 4").holds(summary)
    assert not parse_assertion("detect < 1s").holds(summary)  # not measured: fails
    assert parse_assertion("rto < 0.1m").value == pytest.approx(6.0)
    assert str(parse_assertion("  rto   <  5s ")) == "rto < 5s"
    for bad in ("rto", "rto < five", "__import__('os') == 0", "rto =< 5", "speed < 1"):
        with pytest.raises(AssertionSyntaxError):
            parse_assertion(bad)
    (e,) = expectations({"rto": 5.0})
    assert (e.metric, e.op, e.value) == ("rto", "<=", 5.0)
    with pytest.raises(AssertionSyntaxError):
        expectations({"latency": 1.0})


DOCS = [
    {"name": "db/0", "component": "db", "host": "n1", "role": "replica"},
    {"name": "db/1", "component": "db", "host": "n2", "role": "primary"},
    {"name": "db/2", "component": "db", "host": "n3", "role": "replica"},
    {"name": "etcd/0", "component": "etcd", "host": "n1", "role": "leader"},
    {"name": "lb/0", "component": "lb", "host": "n1", "role": None},
]


def test_targets_resolve_from_what_status_reports() -> None:
    rng = random.Random(1)
    assert resolve_targets(fault(at=1, kill="db", role="primary"), DOCS, rng) == ["db/1"]
    assert resolve_targets(fault(at=1, kill="db", role="replica"), DOCS, rng)[0] in ("db/0", "db/2")
    assert resolve_targets(fault(at=1, pause="etcd", role="leader"), DOCS, rng) == ["etcd/0"]
    assert resolve_targets(fault(at=1, kill="host:n1"), DOCS, rng) == ["db/0", "etcd/0", "lb/0"]
    assert resolve_targets(fault(at=1, stop="lb/0"), DOCS, rng) == ["lb/0"]
    picks = {resolve_targets(fault(at=1, kill="db"), DOCS, random.Random(s))[0] for s in range(20)}
    assert picks == {"db/0", "db/1", "db/2"}
    with pytest.raises(DrillError, match="no instance of lb is holder"):
        resolve_targets(fault(at=1, kill="lb", role="holder"), DOCS, rng)
    with pytest.raises(DrillError, match="nothing of this stack runs on host n9"):
        resolve_targets(fault(at=1, kill="host:n9"), DOCS, rng)
    assert describe(fault(at=1, pause="etcd", role="leader", **{"for": 5})) == (
        "pause etcd (leader) for 5s"
    )
    assert describe(fault(at=1, latency="zone:eu/a", ms=50)) == "latency zone:eu/a +50ms"


TOPO = """\
name: t
hosts:
  n1: {}
  n2: {}
components:
  lb: {kind: load_balancer, instances: [n1, n2], needs: [web], port: 8000, routes: [{to: web}]}
  web: {kind: service, instances: [n1], port: 9000}
  db: {kind: postgres, instances: [n1, n2], needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: [n1, n2], port: 2379, peer_port: 2390}
entry: [lb, db]
drills:
  crash:
    faults: [{at: 2s, kill: db, role: primary}, {at: 1s, pause: etcd, for: 4s}]
    expect: {lost_writes: 0}
"""


def test_plans() -> None:
    t = load_topology_text(TOPO)
    p = scenario_plan(t, "crash")
    (phase,) = p.phases
    assert p.kind == "scenario:crash" and phase.duration == 10.0 and p.expect == {"lost_writes": 0}
    # No traffic given: one stream per entry, as its clients reach it.
    assert [(s.http is not None, s.sql_writes is not None) for s in p.traffic] == [
        (True, False),
        (False, True),
    ]
    with pytest.raises(DrillError, match="no scenario 'nope'"):
        scenario_plan(t, "nope")

    running = ["lb/0", "lb/1", "web/0", "db/0", "db/1", "etcd/0", "etcd/1"]
    a = analysis_plan(t, ["instance:web/0", "host:n1"], running, hold=3.0, lab=False)
    predicted = {ph.element: ph.predicted for ph in a.phases}
    assert predicted["instance:web/0"] == "down" and predicted["host:n1"] == "down"
    assert predicted["instance:lb/0"] == "up" and predicted["host:n2"] == "up"
    assert len(a.phases) == 7 + 2
    assert all(ph.faults[0].action == "pause" and ph.faults[0].for_ == 3.0 for ph in a.phases)
    lab = analysis_plan(t, [], running[:2], hold=3.0, lab=True)
    assert [ph.faults[0].action for ph in lab.phases] == ["pause", "pause", "cut", "cut"]
    assert any("not run by this stack" in n for n in lab.notes)
    # --only: a kind, an element, an instance; a selector that drills nothing is an error.
    cut = only_elements(a, ["host", "instance:lb/0", "web/0"])
    assert [ph.element for ph in cut.phases] == [
        "instance:lb/0",
        "instance:web/0",
        "host:n1",
        "host:n2",
    ]
    assert only_elements(a, []) is a
    with pytest.raises(DrillError, match="--only zone: the default plan drills no such"):
        only_elements(a, ["zone"])


def test_the_random_plan_is_the_test_suites_schedule() -> None:
    t = load_topology_text(TOPO)
    a, b = random_plan(t, 7, 12), random_plan(t, 7, 12)
    assert a == b and a.seed == 7 and len(a.phases) == 12
    kinds = [str(f.kind) for f in draw_schedule(7, 12, _kinds())]
    assert [ph.name.split(" ", 1)[1] for ph in a.phases] == kinds
    first = {ph.name.split(" ", 1)[1]: ph.faults[0] for ph in a.phases}
    assert first["node-kill"].action == "kill" and first["node-kill"].role == "primary"
    assert first["agent-pause"].process == "agent" and first["agent-pause"].for_
    assert (
        first["etcd-leader-pause"].target == "etcd" and first["switchover"].action == "switchover"
    )
    assert random_plan(t, 8, 12) != a


def _kinds():  # type: ignore[no-untyped-def]
    from spofless.drill.plans import RANDOM_KINDS

    return RANDOM_KINDS


def test_history_trend_and_sparkline() -> None:
    assert trend([2.0, 2.0, 3.0, None, 1.0]) == ["", "=", "▲ +50%", "", "▼ -57%"]
    assert sparkline([1.0, None, 2.0]) == "▄ █"
    assert sparkline([]) == ""


def test_where_http_traffic_goes() -> None:
    from spofless.drill.traffic import http_addresses
    from spofless.topology._drills import HttpTarget

    t = load_topology_text(TOPO)
    via_lb = http_addresses(t, HttpTarget(via="lb", to="lb"))
    assert list(via_lb()) == ["127.0.0.1:8000", "127.0.0.1:8001"]  # in instance order
    fixed = http_addresses(t, HttpTarget(via="address", address="10.0.0.1:80"))
    assert list(fixed()) == ["10.0.0.1:80"]


def test_faults_on_what_the_stack_does_not_run_are_refused_up_front() -> None:
    from spofless.drill.runner import _not_run

    docs = [dict(d) for d in DOCS]
    assert _not_run(fault(at=1, kill="db", role="primary"), docs) == ""
    assert _not_run(fault(at=1, kill="db/2"), docs) == ""
    assert _not_run(fault(at=1, kill="db/7"), docs) == "this stack does not run db/7"
    assert _not_run(fault(at=1, kill="host:n9"), docs) == "this stack runs nothing on n9"
    assert _not_run(fault(at=1, pause="web"), docs) == "this stack runs no instance of web"
    assert _not_run(fault(at=1, cut="host:n9"), docs) == ""  # the lab's own check
