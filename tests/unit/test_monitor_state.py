"""The monitor's live state: fall/rise, PostgreSQL states, flapping, failovers, grouping."""

from __future__ import annotations

from pathlib import Path

from spofless.monitor import (
    AlertBook,
    FlapDamper,
    LiveState,
    Observation,
    group_notifications,
    live_analysis,
    redundancy_alerts,
    targets,
)
from spofless.monitor._probe import _postgres
from spofless.topology import Topology, load_topology_text

SHOP = """\
name: shop
components:
  db: {kind: postgres, instances: 2, needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2479}
  cache: {kind: memcached, instances: 2}
  monitor: {kind: monitor, instances: 2, port: 9600}
entry: [db]
"""

UP = Observation(True, "up", "ok")
REFUSED = Observation(False, "down", "connection refused", definite=True)
SILENT = Observation(False, "down", "no answer within 0.5s")


def shop() -> Topology:
    return load_topology_text(SHOP)


def state(fall: int = 2, rise: int = 2, flap: int = 4) -> LiveState:
    t = shop()
    names = [t.name for t in targets(t) if t.name != "monitor/0"]
    return LiveState(
        t, names, me="monitor/0", fall=fall, rise=rise, damper=FlapDamper(60, flap), max_lag=100
    )


def primary(leader: bool = True) -> dict[str, object]:
    return {"running": True, "role": "primary", "leader": leader, "state": "running"}


def replica(**kw: object) -> dict[str, object]:
    return {"running": True, "role": "replica", "streaming": True, "state": "streaming", **kw}


def test_targets_are_what_has_a_status_to_look_at() -> None:
    got = {t.name: t for t in targets(shop())}
    assert set(got) == {"db/0", "db/1", "etcd/0", "etcd/1", "etcd/2", "monitor/0", "monitor/1"}
    assert (got["db/1"].how, got["db/1"].port) == ("postgres", 8009)
    assert (got["etcd/2"].how, got["etcd/2"].port) == ("etcd", 2381)
    assert got["monitor/1"].how == "monitor"


def test_postgres_status_to_observation() -> None:
    assert _postgres(primary()).ok
    assert not _postgres(primary(leader=False)).ok
    assert _postgres(replica()).ok
    lagging = _postgres(replica(streaming=False, reason="no WAL receiver"))
    assert (lagging.ok, lagging.state, lagging.detail) == (
        False,
        "not streaming",
        "no WAL receiver",
    )
    cloning = _postgres({"running": False, "role": "replica", "state": "cloning"})
    assert (cloning.ok, cloning.state) == (False, "catching up")
    failed = _postgres({"running": True, "role": "replica", "state": "failed", "reason": "x"})
    assert (failed.ok, failed.state) == (False, "down")


def test_fall_rise_and_a_refused_connection() -> None:
    s = state()
    for name in s.views:
        s.observe(name, UP, 0.0)
    assert s.complete and s.down() == frozenset()
    assert s.observe("etcd/1", SILENT, 1.0) == []  # one silent look is not enough
    (event,) = s.observe("etcd/1", SILENT, 2.0)
    assert event.kind == "instance_down" and "no answer" in event.message
    assert s.down() == {"instance:etcd/1"}
    (event,) = s.observe("etcd/2", REFUSED, 2.0)  # refused: at once
    assert s.observe("etcd/1", UP, 3.0) == []
    (event,) = s.observe("etcd/1", UP, 4.0)
    assert event.kind == "instance_up"
    assert s.down() == {"instance:etcd/2"}


def test_a_replica_not_streaming_is_down_and_one_catching_up_is_not_failed() -> None:
    s = state(fall=1)
    for name in s.views:
        s.observe(name, UP, 0.0)
    (event,) = s.observe("db/1", _postgres(replica(streaming=False)), 1.0)
    assert event.kind == "instance_down" and "not streaming" in event.message
    (event,) = s.observe("db/1", _postgres({"running": False, "state": "rewinding"}), 2.0)
    assert event.kind == "catching_up" and "not failed" in event.message
    assert s.down() == {"instance:db/1"}  # down for the analysis either way
    live = live_analysis(s.topology, s.down())
    assert live.margins["db"].failures == 1


def test_flapping_is_one_event_and_down_until_it_settles() -> None:
    s = state(fall=1, rise=1, flap=4)
    for name in s.views:
        s.observe(name, UP, 0.0)
    kinds = []
    for i, obs in enumerate([REFUSED, UP, REFUSED, UP, REFUSED, UP]):
        kinds += [e.kind for e in s.observe("etcd/0", obs, 1.0 + i)]
    assert kinds == ["instance_down", "instance_up", "instance_down", "flapping"]
    assert s.views["etcd/0"].state == "up"
    assert s.down() == {"instance:etcd/0"}  # up right now, but not to be relied on
    assert s.settle(30.0) == []
    (ended,) = s.settle(70.0)
    assert ended.kind == "flapping_ended" and s.down() == frozenset()


def test_a_new_primary_is_a_failover_with_the_write_pause() -> None:
    s = state(fall=1, rise=1)
    s.observe("db/0", Observation(True, "up", "", facts=primary()), 0.0)
    s.observe("db/1", Observation(True, "up", "", facts=replica()), 0.0)
    assert s.leaders_seen(0.0) == []
    s.observe("db/0", REFUSED, 1.0)
    assert s.leaders_seen(1.0) == []
    s.observe("db/1", Observation(True, "up", "", facts=primary()), 3.5)
    (event,) = s.leaders_seen(3.5)
    assert event.kind == "failover"
    assert event.data == {
        "old": "db/0",
        "new": "db/1",
        "write_pause": 3.5,
        "no_primary_seen": 2.5,
        "requested": False,
    }


def test_grouping_by_labels() -> None:
    t = shop()
    base = live_analysis(t, ())
    text = SHOP.replace("entry: [db]", "entry: [db, cache]")
    t2 = load_topology_text(text)
    base2 = live_analysis(t2, ())
    alerts = redundancy_alerts(
        base2, live_analysis(t2, {"instance:etcd/1", "instance:cache/0"}), t2
    )
    notes = AlertBook().update(alerts, 1.0)
    assert len(notes) == 2
    by_component = group_notifications(notes, ["alertname", "component"])
    assert [g.labels["component"] for g in by_component] == ["db", "cache"]
    (one,) = group_notifications(notes, ["alertname"])
    assert one.labels == {"alertname": "RedundancyLost"} and len(one.notes) == 2
    assert base.margins["db"].failures == 2


VIP = """\
name: shop
security: {tls: false}  # a text topology has no secrets directory
hosts:
  h1: {}
  h2: {}
components:
  lb:
    kind: load_balancer
    instances: [h1, h2]
    port: 8000
    routes: [{to: web}]
    vip: {address: 10.0.0.9/24}
  web: {kind: service, instances: [h1, h2], port: 8100}
  etcd: {kind: etcd, instances: [h1, h2, h1], port: 2379, peer_port: 2479, min_up: majority}
  monitor: {kind: monitor, instances: [h1, h2], port: 9600}
entry: [lb]
"""


async def test_a_vip_hand_over_is_an_event(tmp_path: Path) -> None:
    from spofless.dcs import MemoryStore
    from spofless.monitor import Monitor, monitor_settings
    from spofless.topology import vip_claim_key
    from spofless.vip import Claim

    t = load_topology_text(VIP)
    store = MemoryStore()
    monitor = Monitor(monitor_settings(t, "monitor", 0, tmp_path), store=store)
    key = vip_claim_key(t, "lb")
    await store.put(key, Claim("lb/0", "holding").encode())
    assert await monitor._vip_holders(1.0) == []  # the first holder seen: no hand-over
    await store.put(key, Claim("lb/1", "pending").encode())
    await store.put(key, Claim("lb/1", "holding").encode())
    (event,) = await monitor._vip_holders(2.0)
    assert event.kind == "vip_handover"
    assert event.data == {"old": "lb/0", "new": "lb/1"}
    assert monitor.status_json()["vip_holders"] == {"lb": "lb/1"}
    monitor.history.close()


def test_a_load_balancer_s_backends_ejected_down_and_back() -> None:
    from spofless.health import Detector
    from spofless.monitor._probe import _lb
    from spofless.monitor._state import InstanceView

    s = state(fall=1, rise=1)

    def backends(**states: dict[str, object]) -> Observation:
        return _lb({"backends": states})

    up = {"status": "up", "admin": "enabled", "ejected": False}
    s.views["lb/0"] = InstanceView("lb/0", Detector(1, 1))  # the shop has no lb: add one
    assert s.observe("lb/0", backends(a=up, b=up), 0.0) == []
    ejected = {**up, "ejected": True}
    down = {**up, "status": "down"}
    events = s.observe("lb/0", backends(a=ejected, b=down), 1.0)
    assert [e.kind for e in events] == ["backend_ejected", "backend_down"]
    assert events[0].message == "lb/0 ejected backend a (consecutive failures)"
    (back,) = s.observe("lb/0", backends(a=up, b=down), 2.0)
    assert back.kind == "backend_up" and "backend a" in back.message
    assert _lb({"backends": {"a": {**up, "admin": "draining"}}}).facts == {
        "backends": {"a": "draining"}
    }


def test_an_instance_starting_is_not_flapping() -> None:
    s = state(fall=1, rise=1, flap=4)
    # Down at first (started after the monitor), up, then killed and back: 2 changes.
    kinds = []
    for i, obs in enumerate([REFUSED, UP, REFUSED, UP]):
        kinds += [e.kind for e in s.observe("etcd/0", obs, float(i))]
    assert kinds == ["instance_down", "instance_up", "instance_down", "instance_up"]
    assert not s.damper.flapping("etcd/0")


VIP_REGIONS = """\
name: geo
security: {tls: false}
regions:
  r1: {zones: [a]}
  r2: {zones: [a]}
hosts:
  e1: {zone: r1/a, address: 127.0.0.1}
  e2: {zone: r1/a, address: 127.0.0.2}
  u1: {zone: r2/a, address: 127.0.1.1}
  u2: {zone: r2/a, address: 127.0.1.2}
components:
  lb:
    kind: load_balancer
    instances: [e1, e2, u1, u2]
    port: 8000
    routes: [{to: web}]
    vip: {addresses: {r1: 10.0.255.1/16, r2: 10.0.255.2/16}}
  lb2:  # its name starts with lb's: its claim is under lb's key as a prefix, not lb's
    kind: load_balancer
    instances: [e1, u1]
    port: 8001
    routes: [{to: web}]
    vip: {address: 10.0.255.9/16}
  web: {kind: service, instances: [e1, u1], port: 8100}
  etcd: {kind: etcd, instances: [e1, u1, e2], port: 2379, peer_port: 2479, min_up: majority}
  monitor: {kind: monitor, instances: [e1, u1], port: 9600}
entry: [lb]
"""


def test_per_region_vip_holders_are_read_from_the_region_keys() -> None:
    from spofless.dcs import KeyValue
    from spofless.monitor._vipwatch import claim_holders, handovers
    from spofless.vip import Claim

    t = load_topology_text(VIP_REGIONS)
    spec = t.components["lb"].vip  # type: ignore[union-attr]
    assert spec is not None
    key = "/spofless/geo/vip/lb"

    def kv(k: str, claim: Claim) -> KeyValue:
        return KeyValue(k, claim.encode(), 1, 1, 0)

    found = [
        kv(f"{key}/r1", Claim("lb/0", "holding")),
        kv(f"{key}/r2", Claim("lb/3", "pending")),  # not yet holding: no holder
        kv("/spofless/geo/vip/lb2", Claim("lb2/0", "holding")),
    ]
    first = claim_holders("lb", spec, key, found)
    assert first == {"lb[r1]": "lb/0", "lb[r2]": None}
    found[1] = kv(f"{key}/r2", Claim("lb/3", "holding"))
    found[0] = kv(f"{key}/r1", Claim("lb/1", "holding"))
    second = claim_holders("lb", spec, key, found)
    assert handovers("lb", spec, {}, first) == []  # first seen: no hand-over
    moved = handovers("lb", spec, first, second)
    assert [(h.slot, h.region, h.old, h.new) for h in moved] == [
        ("lb[r1]", "r1", "lb/0", "lb/1"),
        ("lb[r2]", "r2", None, "lb/3"),
    ]
    assert moved[0].text == "lb: the VIP 10.0.255.1/16 in r1 moved from lb/0 to lb/1"


async def test_a_per_region_vip_hand_over_is_an_event_of_its_region(tmp_path: Path) -> None:
    """The monitor reads the claim key and the region keys below it (one prefix read) and
    keeps one holder per region, on /status."""
    from spofless.dcs import MemoryStore
    from spofless.monitor import Monitor, monitor_settings
    from spofless.topology import vip_claim_key
    from spofless.vip import Claim

    t = load_topology_text(VIP_REGIONS)
    store = MemoryStore()
    monitor = Monitor(monitor_settings(t, "monitor", 0, tmp_path), store=store)
    await store.put(vip_claim_key(t, "lb", "r1"), Claim("lb/0", "holding").encode())
    await store.put(vip_claim_key(t, "lb", "r2"), Claim("lb/2", "holding").encode())
    await store.put(vip_claim_key(t, "lb2"), Claim("lb2/0", "holding").encode())
    assert await monitor._vip_holders(1.0) == []
    assert monitor.status_json()["vip_holders"] == {
        "lb[r1]": "lb/0",
        "lb[r2]": "lb/2",
        "lb2": "lb2/0",
    }
    await store.put(vip_claim_key(t, "lb", "r2"), Claim("lb/3", "holding").encode())
    (event,) = await monitor._vip_holders(2.0)
    assert (event.kind, event.subject) == ("vip_handover", "lb")
    assert event.data == {"old": "lb/2", "new": "lb/3", "region": "r2"}
    assert "10.0.255.2/16 in r2" in event.message
    await store.delete(vip_claim_key(t, "lb", "r1"))  # r1's holder gone, none yet
    (event,) = await monitor._vip_holders(3.0)
    assert event.data == {"old": "lb/0", "new": None, "region": "r1"}
    assert monitor.status_json()["vip_holders"]["lb[r1]"] is None
    monitor.history.close()
