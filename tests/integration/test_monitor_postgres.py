"""The monitor's looks at a real PostgreSQL cluster (3 agents, 3 etcd members): roles and
streaming seen through each agent's /status; kill -9 of the primary's node is an instance
down, a failover with the write pause the monitor saw, and a redundancy alert naming
what would now take db down."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pg_cluster import start_cluster

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


def test_the_monitor_sees_roles_streaming_and_a_failover() -> None:
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
            damper=FlapDamper(60, 4),
            max_lag=16 << 20,
        )

        async def run() -> list[Event]:
            client = http_client(etcd_client_tls(topology))  # etcd over TLS, as `up` runs it
            events: list[Event] = []
            try:
                events += await _look(state, watched, client)
                assert state.complete and state.down() == frozenset(), state.views
                old = cluster.primary()
                assert old is not None
                roles = {n: v.facts.get("role") for n, v in state.views.items()}
                assert sorted(r for r in roles.values() if r) == ["primary", "replica", "replica"]
                old.kill_node()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    events += await _look(state, watched, client)
                    if any(e.kind == "failover" for e in events):
                        break
                    await asyncio.sleep(0.2)
                return events
            finally:
                await client.aclose()

        events = asyncio.run(run())
        kinds = [e.kind for e in events]
        assert "instance_down" in kinds and "failover" in kinds, kinds
        (failover,) = [e for e in events if e.kind == "failover"]
        new = cluster.primary()
        assert new is not None
        assert failover.data["new"] == f"db/{new.index}"
        assert failover.data["old"] != failover.data["new"]
        assert failover.data["write_pause"] > 0
        down = state.down()
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
