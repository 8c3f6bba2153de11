"""The PostgreSQL events a monitor derives from its agents' /status: a failover or
switchover with the old and new primary and the write pause, degraded synchronous mode,
replica lag over the bound. Each reported once when it starts and once when it ends."""

from __future__ import annotations

from spofless.monitor import FlapDamper, LiveState, Observation, targets
from spofless.monitor._probe import _postgres
from spofless.topology import load_topology_text

DB = """\
name: shop
components:
  db: {kind: postgres, instances: 3, needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2479}
  monitor: {kind: monitor, instances: 2, port: 9600}
entry: [db]
"""


def state() -> LiveState:
    t = load_topology_text(DB)
    names = [x.name for x in targets(t) if x.name != "monitor/0"]
    s = LiveState(t, names, me="monitor/0", fall=1, rise=1, damper=FlapDamper(60, 4), max_lag=1000)
    for name in names:
        s.observe(name, Observation(True, "up", "ok"), 0.0)
    return s


def primary(**kw: object) -> Observation:
    body = {"running": True, "role": "primary", "leader": True, "state": "running", **kw}
    return _postgres(body)


def replica(lag: int = 0) -> Observation:
    body = {"running": True, "role": "replica", "streaming": True, "state": "streaming"}
    return _postgres({**body, "lag": lag})


def test_a_switchover_names_both_primaries_and_the_pause() -> None:
    s = state()
    s.observe("db/0", primary(), 1.0)
    s.observe("db/1", replica(), 1.0)
    assert s.leaders_seen(1.0) == []
    s.leaders.requested("db", "db/0", None, 1.5)  # `spofless pg switchover`'s key, watched
    # The old primary hands over and follows the new one: it never went down.
    s.observe("db/0", replica(), 2.0)
    assert s.leaders_seen(2.0) == []  # no writable primary seen for now
    s.observe("db/1", primary(), 2.4)
    (event,) = s.leaders_seen(2.4)
    assert (event.kind, event.subject, event.severity) == ("switchover", "db", "info")
    assert event.data["old"] == "db/0" and event.data["new"] == "db/1"
    assert event.data["write_pause"] == 1.4 and event.data["no_primary_seen"] == 0.4
    assert event.message == (
        "db: switchover db/0 -> db/1 (requested; writes paused at most 1.40s, "
        "no writable primary seen for 0.40s)"
    )
    assert s.leaders_seen(3.0) == []  # once


def test_degraded_synchronous_mode_once_then_restored() -> None:
    s = state()
    assert s.observe("db/0", primary(degraded=False), 1.0) == []
    (event,) = s.observe("db/0", primary(degraded=True), 2.0)
    assert (event.kind, event.subject, event.severity) == ("synchronous_degraded", "db", "warning")
    assert "commits wait for no replica" in event.message
    assert s.observe("db/0", primary(degraded=True), 3.0) == []
    (back,) = s.observe("db/0", primary(degraded=False), 4.0)
    assert (back.kind, back.severity) == ("synchronous_degraded", "info")
    assert back.message == "db: synchronous replication restored"


def test_replica_lag_over_the_bound_once_then_within() -> None:
    s = state()
    assert s.observe("db/2", replica(lag=999), 1.0) == []
    (event,) = s.observe("db/2", replica(lag=5000), 2.0)
    assert (event.kind, event.subject, event.severity) == ("replica_lag", "db/2", "warning")
    assert event.message == "db/2 lags 5000 bytes behind its primary (bound 1000)"
    assert s.observe("db/2", replica(lag=7000), 3.0) == []
    (back,) = s.observe("db/2", replica(lag=10), 4.0)
    assert (back.kind, back.severity) == ("replica_lag", "info")
    # A primary's lag is not a replica's lag.
    assert s.observe("db/0", primary(lag=10**9), 5.0) == []
