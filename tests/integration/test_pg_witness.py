"""The fence witness against a real PostgreSQL: commits wait for it, and it acknowledges
only while it may (the agent's lease); the cost per commit is printed (-s)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg
import pytest
from pg_fixtures import ServerFactory

from spofless.pg import PostgresServer
from spofless.pg.witness import FenceWitness, witness_standby_names

pytestmark = pytest.mark.integration

COMMITS = 300


async def _connect(server: PostgresServer) -> psycopg.AsyncConnection[tuple[object, ...]]:
    s = server.settings
    return await psycopg.AsyncConnection.connect(
        host=s.host, port=s.port, user="postgres", dbname="postgres", autocommit=True
    )


async def _commits_per_second(conn: psycopg.AsyncConnection[tuple[object, ...]], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await conn.execute("INSERT INTO t VALUES (%s)", (i,))
    elapsed = time.perf_counter() - start
    await conn.execute("TRUNCATE t")
    return n / elapsed


async def test_commits_wait_for_the_witness_while_it_may_not_acknowledge(
    pg_factory: ServerFactory,
) -> None:
    server = pg_factory("a")
    await server.initdb()
    await server.start(standby=False)
    allowed = True
    witness = FenceWitness("a", server.settings.host, server.settings.port, lambda: allowed)
    task = asyncio.create_task(witness.run())
    conn = await _connect(server)
    try:
        await conn.execute("CREATE TABLE t (id int)")
        await _commits_per_second(conn, COMMITS)  # warm up
        without = await _commits_per_second(conn, COMMITS)

        await asyncio.wait_for(witness.streaming.wait(), 10)
        await server.set_synchronous_standby_names(witness_standby_names())
        rows = await server.query(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
            ("spofless_fence",),
        )
        assert rows == [("sync",)]
        with_witness = await _commits_per_second(conn, COMMITS)
        print(
            f"\n[fence witness] {without:.0f} commits/s without, {with_witness:.0f} with "
            f"({1000 / with_witness - 1000 / without:+.2f} ms per commit, one client)"
        )

        # The lease is gone: the commit is not acknowledged, however long we wait.
        allowed = False
        pending = asyncio.create_task(conn.execute("INSERT INTO t VALUES (-1)"))
        done, _ = await asyncio.wait({pending}, timeout=1.5)
        assert not done, "a commit was acknowledged while the witness could not acknowledge"
        assert witness.refused > 0
        # Valid again (a test knob; a real agent's lease never comes back): it completes.
        allowed = True
        await asyncio.wait_for(asyncio.shield(pending), 10)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(30):
                await task
        with contextlib.suppress(BaseException):
            await conn.close()
