"""Failover or switchover: a new writable leader is a switchover when a request naming the
old leader was seen, else a failover; the write pause from the monitor's looks. The
request key is watched (a MemoryStore), so a request shorter than a look is not missed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from spofless.dcs import MemoryStore
from spofless.monitor import Event
from spofless.monitor._leaders import REQUEST_GRACE, LeaderWatch
from spofless.monitor._switchover import switchover_keys, watch_requests
from spofless.topology import load_topology_text


def looks(w: LeaderWatch, *seen: tuple[float, str | None]) -> list[Event]:
    out: list[Event] = []
    for now, leader in seen:
        out += w.update({"db": leader}, now)
    return out


def test_the_first_leader_is_no_change_and_a_steady_one_none() -> None:
    w = LeaderWatch("monitor/0")
    assert looks(w, (0.0, None), (1.0, "db/0"), (2.0, "db/0")) == []


def test_a_lost_primary_is_a_failover_with_both_bounds_of_the_pause() -> None:
    w = LeaderWatch("monitor/0")
    looks(w, (0.0, "db/0"), (1.0, "db/0"))
    assert looks(w, (1.2, None), (2.0, None)) == []
    (e,) = looks(w, (3.5, "db/1"))
    assert (e.kind, e.subject, e.severity) == ("failover", "db", "warning")
    assert e.data == {
        "old": "db/0",
        "new": "db/1",
        "write_pause": 2.5,  # last seen writable at 1.0, the new one first at 3.5
        "no_primary_seen": 2.3,  # none seen from 1.2
        "requested": False,
    }
    assert e.message == (
        "db: failover db/0 -> db/1 (db/0 lost; writes paused at most 2.50s, "
        "no writable primary seen for 2.30s)"
    )
    assert looks(w, (4.0, "db/1")) == []  # once


def test_a_request_naming_the_old_leader_is_a_switchover() -> None:
    w = LeaderWatch("monitor/0")
    looks(w, (0.0, "db/0"))
    w.requested("db", "db/0", None, 0.5)
    # The new leader deletes the key as it leads, a look before the monitor sees it.
    w.request_ended("db", 0.9)
    (e,) = looks(w, (1.0, "db/1"))
    assert (e.kind, e.severity) == ("switchover", "info")
    assert e.data["requested"] and e.data["no_primary_seen"] == 0
    assert e.message == "db: switchover db/0 -> db/1 (requested; writes paused at most 1.00s)"
    # The request is used up: the next change without one is a failover.
    (e,) = looks(w, (5.0, None), (6.0, "db/2"))
    assert e.kind == "failover" and not e.data["requested"]


def test_a_manual_failover_request_is_a_requested_failover() -> None:
    w = LeaderWatch("monitor/0")
    looks(w, (0.0, "db/0"))
    w.requested("db", None, "db/2", 0.5)
    (e,) = looks(w, (1.0, None), (2.0, "db/2"))
    assert e.kind == "failover" and e.data["requested"]
    assert "(requested;" in e.message


def test_a_request_for_another_leader_or_withdrawn_long_ago_explains_nothing() -> None:
    w = LeaderWatch("monitor/0")
    looks(w, (0.0, "db/0"))
    w.requested("db", "db/9", None, 0.5)  # db/0's agent ignores it
    (e,) = looks(w, (1.0, "db/1"))
    assert e.kind == "failover" and not e.data["requested"]
    w.requested("db", "db/1", None, 2.0)
    w.request_ended("db", 32.0)  # withdrawn after its bound: no change came
    (e,) = looks(w, (32.0 + REQUEST_GRACE + 1, "db/2"))
    assert e.kind == "failover"


TOPOLOGY = """\
name: shop
security: {tls: false}
components:
  db: {kind: postgres, instances: 3, needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2479}
entry: [db]
"""


def test_a_request_put_and_deleted_between_two_looks_is_seen() -> None:
    topology = load_topology_text(TOPOLOGY)
    ((comp, (key, urls)),) = switchover_keys(topology).items()
    assert (comp, key) == ("db", "/spofless/shop/db/switchover")
    assert urls == ["http://127.0.0.1:2379", "http://127.0.0.1:2380", "http://127.0.0.1:2381"]

    async def run() -> list[Event]:
        store = MemoryStore()
        w = LeaderWatch("monitor/0")
        w.update({"db": "db/0"}, 0.0)
        task = asyncio.create_task(watch_requests("db", key, store, w))
        try:
            await asyncio.sleep(0.01)
            await store.put(key, json.dumps({"leader": "db-0", "candidate": None}))
            await store.delete(key)
            for _ in range(100):  # bounded: the watch delivers within a few loop turns
                if "db" in w.requests and w.requests["db"].ended_at is not None:
                    break
                await asyncio.sleep(0.01)
            assert w.requests["db"].leader == "db/0"  # etcd's db-0, named as the monitor does
            return w.update({"db": "db/1"}, time.time())  # ... and the look comes after
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    (event,) = asyncio.run(run())
    assert event.kind == "switchover" and event.data["old"] == "db/0"


MONITORED = TOPOLOGY.replace(
    "entry: [db]", "  monitor: {kind: monitor, instances: 2, port: 9600}\nentry: [db]"
)


def test_the_monitor_watches_each_postgres_component_s_request_key(tmp_path: Path) -> None:
    from spofless.monitor import Monitor, monitor_settings

    topology = load_topology_text(MONITORED)
    store = MemoryStore()
    monitor = Monitor(monitor_settings(topology, "monitor", 0, tmp_path), store=store)

    async def run() -> None:
        tasks, opened = monitor._watch_switchovers()
        assert opened == []  # db's etcd is the monitor's own: its store is shared
        try:
            await asyncio.sleep(0.01)
            await store.put("/spofless/shop/db/switchover", '{"leader": "db-1"}')
            for _ in range(100):
                if "db" in monitor.state.leaders.requests:
                    break
                await asyncio.sleep(0.01)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await monitor.http.aclose()

    asyncio.run(run())
    monitor.history.close()
    monitor.recorder.close()
    assert monitor.state.leaders.requests["db"].leader == "db/1"
