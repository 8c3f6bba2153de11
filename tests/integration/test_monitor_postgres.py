"""The monitor's looks at a real PostgreSQL cluster (3 agents, 3 etcd members): roles and
streaming seen through each agent's /status; `spofless pg switchover` is a `switchover`
event (its request key watched in etcd), then kill -9 of the primary's node an instance
down, a `failover` event with the write pause the monitor saw, and a redundancy alert
naming what would now take db down; the killed node rejoins and the cluster is whole."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pg_cluster import start_cluster

from spofless.dcs import DCSSettings, EtcdStore
from spofless.monitor import (
    Event,
    FlapDamper,
    LiveState,
    Target,
    live_analysis,
    probe,
    redundancy_alerts,
    targets,
)
from spofless.monitor._probe import http_client
from spofless.monitor._switchover import switchover_keys, watch_requests
from spofless.security import etcd_client_tls
from spofless.topology import load_topology

pytestmark = pytest.mark.integration


async def _look(state: LiveState, watched: list[Target], client: httpx.AsyncClient) -> list[Event]:
    """One look at every target, folded into `state` as the monitor's loop does."""
    looks = await asyncio.gather(*(probe(t, 0.5, client) for t in watched))
    now = time.time()
    events: list[Event] = []
    for target, obs in zip(watched, looks, strict=True):
        events += state.observe(target.name, obs, now)
    return events + state.leaders_seen(now)


def _switchover(file: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("spofless")
    return subprocess.run(
        [str(exe), "pg", "switchover", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_monitor_tells_a_switchover_from_a_failover() -> None:
    with start_cluster(synchronous=False) as cluster:
        topology = load_topology(cluster.file)
        watched = targets(topology)
        assert {t.how for t in watched} == {"postgres", "etcd"}
        state = LiveState(
            topology,
            [t.name for t in watched],
            me="test",
            fall=2,
            rise=2,
            damper=FlapDamper(60, 100),  # a switchover and a failover are many changes
            max_lag=16 << 20,
        )
        ((key, urls),) = switchover_keys(topology).values()

        async def run() -> tuple[list[Event], frozenset[str], str]:
            tls = etcd_client_tls(topology)  # etcd over TLS, as `up` runs it
            client = http_client(tls)
            store = EtcdStore(urls, DCSSettings(tls=tls))
            watch = asyncio.create_task(watch_requests("db", key, store, state.leaders))
            events: list[Event] = []

            async def look_until(done: Callable[[], bool], what: str, bound: float) -> None:
                deadline = time.monotonic() + bound
                while time.monotonic() < deadline:
                    events.extend(await _look(state, watched, client))
                    if done():
                        return
                    await asyncio.sleep(0.2)
                raise AssertionError(f"not within {bound}s: {what}; events {events}")

            def kinds(kind: str) -> list[Event]:
                return [e for e in events if e.kind == kind]

            try:
                await look_until(lambda: state.complete, "every instance looked at", 10)
                assert state.down() == frozenset(), state.views
                roles = {n: v.facts.get("role") for n, v in state.views.items()}
                assert sorted(r for r in roles.values() if r) == ["primary", "replica", "replica"]

                # A planned switchover, through the CLI, while the monitor looks.
                first = cluster.primary()
                assert first is not None
                done = asyncio.create_task(asyncio.to_thread(_switchover, cluster.file))
                await look_until(lambda: bool(kinds("switchover")), "a switchover event", 60)
                out = await done
                assert out.returncode == 0, out.stdout + out.stderr
                await look_until(cluster.healthy, "whole after the switchover", 60)
                await look_until(lambda: state.down() == frozenset(), "all seen up", 30)

                # A failover: kill -9 of the new primary's node.
                old = cluster.primary()
                assert old is not None and old is not first
                old.kill_node()
                await look_until(lambda: bool(kinds("failover")), "a failover event", 60)
                down = state.down()
                # After the fault: the node comes back and the cluster is whole by itself.
                old.wait_agent_exit()
                old.start()
                await look_until(cluster.healthy, "whole after the failover", 90)
                await look_until(lambda: state.down() == frozenset(), "all seen up", 30)
                return events, down, f"db/{first.index}"
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                await store.close()
                await client.aclose()

        events, down, first = asyncio.run(run())
        kinds = [e.kind for e in events]
        (switchover,) = [e for e in events if e.kind == "switchover"]
        (failover,) = [e for e in events if e.kind == "failover"]
        assert kinds.index("switchover") < kinds.index("failover")
        assert switchover.data["old"] == first != switchover.data["new"]
        assert switchover.data["requested"] is True and switchover.severity == "info"
        assert 0 < switchover.data["write_pause"] < 30
        assert "instance_down" in kinds[kinds.index("switchover") :], kinds
        assert failover.data["requested"] is False and failover.severity == "warning"
        assert failover.data["old"] == switchover.data["new"]
        assert 0 < failover.data["no_primary_seen"] <= failover.data["write_pause"] < 60
        new = cluster.primary()  # the killed node rejoined as a replica
        assert new is not None and failover.data["new"] == f"db/{new.index}"
        print(f"\n[monitor] switchover {switchover.data}\n[monitor] failover {failover.data}")
        assert f"instance:{failover.data['old']}" in down
        base = live_analysis(topology, ())
        live = live_analysis(topology, down)
        # The new primary is now in every smallest cut of db, and availability fell.
        new_primary = f"instance:{failover.data['new']}"
        assert all(new_primary in cut for cut in live.margins["db"].cuts if "db/" in cut[0])
        assert any(new_primary in cut for cut in live.margins["db"].cuts)
        assert live.availability < base.availability
        alerts = redundancy_alerts(base, live, topology)
        if live.margins["db"].failures < base.margins["db"].failures:
            # The other replica was not streaming yet (it turns to follow the new
            # primary): it is down too, and the alert names both.
            (alert,) = alerts.values()
            assert f"instance:{failover.data['old']}" in alert.down
            assert alert.summary.endswith("now takes db down")
        else:
            # Both replicas left stream: db can still take two failures, as its etcd
            # can (2 of 3): the margin held, and rightly nothing fires.
            assert alerts == {}
