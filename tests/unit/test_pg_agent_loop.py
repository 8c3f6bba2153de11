"""The agent's loop around a long action, with a fake server and an in-memory store.

A view observed while a clone ran holds the state from before it ("no data directory").
When the clone ends during that observation, the loop must not decide on the stale view:
it did once, cloned a second time over the fresh clone, and the agent stopped with
"already holds a cluster" (seen in CI).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from spofless.dcs import MemoryStore
from spofless.pg import Agent, AgentSettings
from spofless.pg._errors import PgSetupError
from spofless.pg._server_model import PgStatus, ServerSettings, Upstream
from spofless.pg.view import Role

P = "/spofless/t/db"


class FakeServer:
    """Just enough of PostgresServer for a replica that clones, starts and streams."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.running = False
        self.upstream: Upstream | None = None
        self.rewinding = False
        self.clones = 0
        self._data = False

    def has_data(self) -> bool:
        return self._data

    def clone_only(self) -> bool:
        return False

    async def clone(self, up: Upstream) -> None:
        if self._data:
            raise PgSetupError(f"{self.name}: already holds a cluster; refusing to overwrite it")
        await asyncio.sleep(0.3)  # several loops observe while it runs
        self._data = True
        self.clones += 1

    async def start(self, *, upstream: Upstream | None = None, standby: bool = True) -> None:
        self.running, self.upstream = True, upstream

    async def stop(self, mode: str = "fast") -> None:
        self.running = False

    async def controldata(self) -> Any:
        return SimpleNamespace(system_identifier="42")

    async def status(self) -> PgStatus:
        return PgStatus(
            Role.REPLICA,
            1,
            100,
            received_lsn=100,
            replayed_lsn=100,
            receiver_status="streaming",
            segment_size=16 << 20,
        )

    def timelines_at(self, positions: tuple[int | None, ...], seg: int) -> tuple[int, ...]:
        return tuple(1 for _ in positions)


async def _cluster_with_leader(store: MemoryStore) -> None:
    await store.put(f"{P}/initialize", "42")
    await store.put(f"{P}/leader", "db-0")
    leader = {
        "name": "db-0",
        "running": True,
        "role": "primary",
        "timeline": 1,
        "wal_position": 100,
        "host": "127.0.0.1",
        "port": 5432,
    }
    await store.put(f"{P}/members/db-0", json.dumps(leader))


async def _replica_agent(tmp_path: Path) -> tuple[Agent, FakeServer]:
    """An agent of db-1 on a fake server, in a cluster led by db-0 (in memory)."""
    store = MemoryStore()
    await _cluster_with_leader(store)
    settings = AgentSettings(
        prefix=P,
        server=ServerSettings(name="db-1", data_dir=tmp_path / "db-1", port=5433),
        loop_wait=0.05,
    )
    server = FakeServer(settings.server)
    return Agent(settings, store, server), server  # type: ignore[arg-type]


async def test_a_clone_ending_during_an_observation_is_not_done_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    agent, server = await _replica_agent(tmp_path)

    # Every observation made while the clone runs lasts until the clone has ended:
    # the race, made certain.
    read_cluster = agent._read_cluster

    async def slow_read() -> Any:
        busy = agent._busy
        if busy is not None and not busy.done():
            await asyncio.wait({busy})
        return await read_cluster()

    monkeypatch.setattr(agent, "_read_cluster", slow_read)

    run = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(10):
            while not (server.running and agent._local_status.state == "streaming"):
                assert not run.done(), run.exception()
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # a few more loops: none clones again
        assert not run.done(), run.exception()
        assert server.clones == 1
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run


async def test_a_cancellation_a_library_swallows_still_stops_the_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Python 3.11's wait_for (and some drivers) can lose a cancellation that lands as the
    # awaited call completes; the agent then ran on and a test awaiting it hung (CI).
    agent, server = await _replica_agent(tmp_path)
    read_cluster = agent._read_cluster
    swallowed = 0

    async def swallowing_read() -> Any:
        nonlocal swallowed
        me = asyncio.current_task()
        if agent.last_decision is not None and not swallowed and me is not None:
            me.cancel()  # the stop request arrives now...
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                swallowed += 1  # ...and a buggy library carries on
        return await read_cluster()

    monkeypatch.setattr(agent, "_read_cluster", swallowing_read)
    run = asyncio.create_task(agent.run())
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):  # without the guard: loops on, TimeoutError
            await asyncio.shield(run)
    assert swallowed == 1
    assert not server.running, "the agent stops PostgreSQL on its way out"
