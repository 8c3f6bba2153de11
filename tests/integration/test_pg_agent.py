"""Three agents, three real PostgreSQL servers, a real 3-member etcd: bootstrap and failover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from etcd_fixtures import RunningCluster
from free_ports import free_port

from spofless.dcs import EtcdStore
from spofless.pg import Agent, AgentSettings, Role, ServerSettings

pytestmark = pytest.mark.integration


async def until(check: Callable[[], bool], what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit}s: {what}")
        await asyncio.sleep(0.1)


def role(agent: Agent) -> Role | None:
    me = agent.snapshot().me
    return me.role if me.running else None


async def test_bootstrap_replicate_and_fail_over(
    etcd_cluster: RunningCluster,
    pg_base_dir: Path,
) -> None:
    store = EtcdStore(etcd_cluster.endpoints)
    agents: dict[str, Agent] = {}
    tasks: dict[str, asyncio.Task[None]] = {}
    for name in ("a", "b", "c"):
        server = ServerSettings(
            name=name, data_dir=pg_base_dir / name, port=free_port(), start_timeout=30
        )
        agents[name] = Agent(AgentSettings(prefix="/test/pg", server=server), store)
    try:
        for name, agent in agents.items():
            tasks[name] = asyncio.create_task(agent.run(), name=f"agent {name}")
        await until(
            lambda: (
                sorted(str(role(a)) for a in agents.values()) == ["primary", "replica", "replica"]
                and all(
                    a.snapshot().me.streaming for a in agents.values() if role(a) is Role.REPLICA
                )
            ),
            "one primary and two streaming replicas",
        )
        leader = next(n for n, a in agents.items() if role(a) is Role.PRIMARY)
        assert agents[leader].snapshot().me.leader
        await agents[leader].server.query("CREATE TABLE t (id int primary key)")
        await agents[leader].server.query("INSERT INTO t VALUES (1)")

        # The leader's agent stops: it stops PostgreSQL, then frees the lease.
        tasks[leader].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(60):  # a stop that hangs fails, never hangs the suite
                await tasks[leader]
        rest = {n: a for n, a in agents.items() if n != leader}
        started = time.monotonic()
        await until(
            lambda: any(role(a) is Role.PRIMARY and a.snapshot().me.leader for a in rest.values()),
            "a replica promoted",
            limit=30,
        )
        new = next(n for n, a in rest.items() if role(a) is Role.PRIMARY)
        await agents[new].server.query("INSERT INTO t VALUES (2)")
        other = next(n for n in rest if n != new)
        await until(
            lambda: (
                agents[other].server.upstream is not None
                and agents[other].server.upstream.name == new
                and agents[other].snapshot().me.streaming
            ),
            "the other replica follows the new leader",
        )
        print(f"promotion after {time.monotonic() - started:.2f}s")
        rows = await agents[new].server.query("SELECT id FROM t ORDER BY id")
        assert rows == [(1,), (2,)]
    finally:
        for task in tasks.values():
            task.cancel()
        for task in tasks.values():
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(60):
                    await task
        for agent in agents.values():
            agent.server.kill()
        await store.close()
