"""Crash loops and etcd quorum at risk are alerts for the receivers, not only events: one
CrashLoop alert per instance, one EtcdQuorumAtRisk alert per etcd cluster naming the
members lost, each resolved when it is over, grouped as the others and claimed in etcd so
that two monitors seeing the same send it once."""

from __future__ import annotations

import asyncio

from spofless.dcs import ManualClock, MemoryStore
from spofless.monitor import (
    AlertBook,
    ClaimStore,
    CrashLoops,
    QuorumWatch,
    Verdict,
    group_notifications,
)
from spofless.monitor._procs import Supervised
from spofless.topology import load_topology_text


def sup(restarts: int, state: str = "up") -> Supervised:
    return Supervised(state, restarts, (1234,), "exit status 3")


def looping(loops: CrashLoops, name: str, at: float = 0.0) -> None:
    for i in range(4):
        loops.observe(name, sup(i), at + i)


def test_a_crash_loop_is_one_alert_per_instance_resolved_when_it_ran_stably() -> None:
    loops = CrashLoops("monitor/0", restarts=3, window=60.0)
    looping(loops, "web/0")
    looping(loops, "web/1")
    alerts = loops.alerts()
    assert sorted(alerts) == ["crashloop/web/0", "crashloop/web/1"]
    alert = alerts["crashloop/web/0"]
    assert (alert.alertname, alert.component, alert.severity) == ("CrashLoop", "web", "error")
    assert alert.summary == (
        "web/0 is in a crash loop: restarted 3 times within 60s (last exit: exit status 3)"
    )
    assert alert.down == ("instance:web/0",)
    book = AlertBook()
    firing = book.update(alerts, 4.0)
    assert [n.status for n in firing] == ["firing", "firing"]
    # Grouped as every alert (alertname, component): one message with both instances.
    (group,) = group_notifications(firing, ["alertname", "component"])
    assert len(group.notes) == 2
    # More restarts are not news; the supervisor giving up is (critical).
    loops.observe("web/0", sup(5), 10.0)
    assert book.update(loops.alerts(), 10.0) == []
    loops.observe("web/0", sup(5, "failed"), 11.0)
    (worse,) = book.update(loops.alerts(), 11.0)
    assert (worse.status, worse.alert.severity) == ("firing", "critical")
    # web/1 runs a whole window without a restart: resolved; web/0 left the state file.
    loops.observe_all({"web/1": sup(3)}, 70.0)
    resolved = book.update(loops.alerts(), 70.0)
    assert sorted((n.status, n.alert.key) for n in resolved) == [
        ("resolved", "crashloop/web/0"),
        ("resolved", "crashloop/web/1"),
    ]


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


def test_etcd_quorum_at_risk_is_an_alert_naming_the_members_lost() -> None:
    watch = QuorumWatch("monitor/0", load_topology_text(ETCD % 3))
    watch.update(states(3, set()), 0.0)
    assert watch.alerts() == {}
    watch.update(states(3, {1}), 1.0)
    (alert,) = watch.alerts().values()
    assert (alert.key, alert.alertname, alert.severity) == (
        "quorum/etcd",
        "EtcdQuorumAtRisk",
        "error",
    )
    assert alert.down == ("instance:etcd/1",)
    assert alert.cuts == (("instance:etcd/0",), ("instance:etcd/2",))
    assert (alert.margin, alert.baseline) == (0, 1)
    assert "quorum at risk" in alert.summary
    watch.update(states(3, {1, 2}), 2.0)
    (lost,) = watch.alerts().values()
    assert lost.severity == "critical" and lost.down == ("instance:etcd/1", "instance:etcd/2")
    watch.update(states(3, set()), 3.0)
    assert watch.alerts() == {}


def test_a_member_lost_with_margin_to_spare_is_no_quorum_alert() -> None:
    watch = QuorumWatch("monitor/0", load_topology_text(ETCD % 5))
    watch.update(states(5, set()), 0.0)
    watch.update(states(5, {4}), 1.0)
    assert watch.alerts() == {}  # the redundancy alert of what needs etcd says it
    watch.update(states(5, {3, 4}), 2.0)
    assert list(watch.alerts()) == ["quorum/etcd"]


def test_two_monitors_send_a_crash_loop_and_its_resolution_once() -> None:
    async def run() -> list[tuple[str, str, Verdict]]:
        store = MemoryStore(clock=ManualClock())
        out = []
        monitors = []
        for me in ("monitor/0", "monitor/1"):
            loops = CrashLoops(me, restarts=3, window=60.0)
            looping(loops, "web/0")
            claims = ClaimStore(store, "/p", me, claim_ttl=5.0, repeat_interval=100.0)
            monitors.append((me, loops, AlertBook(), claims))
        for now, alive in ((4.0, True), (70.0, False)):
            for me, loops, book, claims in monitors:
                if not alive:
                    loops.observe("web/0", sup(3), now)  # a whole window without a restart
                for note in book.update(loops.alerts(), now):
                    decision, revision = await claims.claim(note, now)
                    out.append((me, note.status, decision.verdict))
                    if decision.verdict is Verdict.CLAIM:
                        assert await claims.mark_sent(note, revision, now)
        return out

    assert asyncio.run(run()) == [
        ("monitor/0", "firing", Verdict.CLAIM),
        ("monitor/1", "firing", Verdict.SKIP),
        ("monitor/0", "resolved", Verdict.CLAIM),
        ("monitor/1", "resolved", Verdict.SKIP),
    ]
