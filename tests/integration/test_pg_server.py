"""The PostgreSQL adapter alone, against real servers: replication, promote, rewind, fencing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from pg_cluster import alive
from pg_fixtures import ServerFactory

from spofless.pg import PostgresServer, Role, ServerSettings, Upstream, slot_name
from spofless.pg._errors import PgCommandError, PgSetupError

pytestmark = pytest.mark.integration


def upstream(server: PostgresServer) -> Upstream:
    return Upstream(server.name, server.settings.host, server.settings.port)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit}s: {what}")
        await asyncio.sleep(0.1)


async def test_replicate_promote_and_rewind_back(pg_factory: ServerFactory) -> None:
    a, b = pg_factory("a"), pg_factory("b")
    assert not a.has_data()
    await a.initdb()
    assert a.has_data() and await a.was_primary()
    await a.start(standby=False)
    st = await a.status()
    assert st.role is Role.PRIMARY and st.timeline == 1 and st.wal_position
    await a.query("CREATE TABLE t (id int primary key)")
    await a.query("INSERT INTO t SELECT generate_series(1, 100)")

    # Clone b through its slot and stream from a.
    await b.clone(upstream(a))
    assert b.has_data() and not await b.was_primary()
    await b.start(upstream=upstream(a))

    async def b_streams_from_a() -> bool:
        ast = await a.status()
        rows = [r for r in ast.replication if r.name == "b" and r.state == "streaming"]
        bst = await b.status()
        return (
            bool(rows)
            and bst.receiver_status == "streaming"
            and (bst.wal_position or 0) >= (ast.wal_position or 0)
        )

    await eventually(b_streams_from_a, "b streaming from a and caught up")
    bst = await b.status()
    assert bst.role is Role.REPLICA and bst.timeline == 1
    assert bst.received_lsn is not None and bst.replayed_lsn is not None
    assert (await b.query("SELECT count(*) FROM t"))[0][0] == 100
    slots = await a.query("SELECT slot_name, active FROM pg_replication_slots")
    assert (slot_name("b"), True) in slots

    # Synchronous replication managed by the adapter: a commit waits for b.
    await a.set_synchronous_standby_names("FIRST 1 (b)")

    async def b_is_sync() -> bool:
        return any(r.name == "b" and r.sync_state == "sync" for r in (await a.status()).replication)

    await eventually(b_is_sync, "b synchronous")
    await a.set_synchronous_standby_names("")

    # The primary fails; b is promoted onto timeline 2 and takes writes.
    await a.stop("immediate")
    assert not a.running
    await b.promote()
    bst = await b.status()
    assert bst.role is Role.PRIMARY and bst.timeline == 2
    await b.query("INSERT INTO t VALUES (1000)")

    # The old primary rejoins only through pg_rewind, as a replica of b.
    assert await a.was_primary()
    await b.create_slots([slot_name("a")])
    await a.rewind(upstream(b))
    assert not await a.was_primary()
    await a.start(upstream=upstream(b))

    async def a_streams_from_b() -> bool:
        st = await a.status()
        return st.receiver_status == "streaming" and st.timeline == 2

    await eventually(a_streams_from_b, "a streaming from b on timeline 2")
    assert (await a.status()).role is Role.REPLICA
    await eventually(lambda: _count_is(a, 101), "the write made on b visible on the rewound a")
    with pytest.raises(Exception, match="read-only"):
        await a.query("INSERT INTO t VALUES (2000)")


async def _count_is(server: PostgresServer, n: int) -> bool:
    return bool((await server.query("SELECT count(*) FROM t"))[0][0] == n)


AGENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from spofless.pg import PostgresServer, ServerSettings

    async def main():
        s = PostgresServer(ServerSettings(name="x", data_dir=Path(sys.argv[1]),
                                          port=int(sys.argv[2]), start_timeout=30))
        await s.start(standby=False)
        print(s.pid, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


async def test_postgres_dies_with_its_agent(pg_factory: ServerFactory) -> None:
    x = pg_factory("x")
    await x.initdb()
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT_SCRIPT,
        str(x.data_dir),
        str(x.settings.port),
        stdout=asyncio.subprocess.PIPE,
    )
    postmaster = 0
    try:
        assert agent.stdout is not None
        postmaster = int(await asyncio.wait_for(agent.stdout.readline(), 60))
        assert alive(postmaster)
        agent.kill()  # SIGKILL: no cleanup code of the agent runs
        await asyncio.wait_for(agent.wait(), 10)

        async def postmaster_gone() -> bool:
            return not alive(postmaster)

        await eventually(postmaster_gone, "PostgreSQL dies with its agent", limit=10)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
        if postmaster and alive(postmaster):
            os.kill(postmaster, signal.SIGKILL)


def test_foreign_directory_is_refused(pg_base_dir: Path) -> None:
    d = pg_base_dir / "foreign"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    server = PostgresServer(ServerSettings(name="f", data_dir=d, port=1))
    with pytest.raises(PgSetupError, match="not a PostgreSQL data directory"):
        server.has_data()
    with pytest.raises(PgSetupError, match="not a PostgreSQL data directory"):
        asyncio.run(server.initdb())
    assert (d / "precious.txt").read_text() == "keep me"


def test_wrong_version_is_refused(pg_base_dir: Path) -> None:
    d = pg_base_dir / "old"
    d.mkdir()
    (d / "PG_VERSION").write_text("9\n")
    server = PostgresServer(ServerSettings(name="o", data_dir=d, port=1))
    with pytest.raises(PgSetupError, match="PostgreSQL 9 data directory"):
        server.has_data()


async def test_reclone_keeps_the_old_directory_aside_within_its_bound(
    pg_factory: ServerFactory,
) -> None:
    a, b = pg_factory("a"), pg_factory("b")
    await a.initdb()
    await a.start(standby=False)
    await b.initdb()  # a cluster of its own: the diverged directory to replace
    own_id = (await b.controldata()).system_identifier
    kept = await b.keep_aside_and_clone(upstream(a), keep=1)
    assert kept.is_dir() and kept.name.startswith("b.old-")
    assert (await b.controldata()).system_identifier == (await a.controldata()).system_identifier
    assert (
        await PostgresServer(b.settings.model_copy(update={"data_dir": kept})).controldata()
    ).system_identifier == own_id
    # The bound is reached: nothing moves, nothing is deleted, and it says why.
    with pytest.raises(PgCommandError, match="1 diverged data directories are kept already"):
        await b.keep_aside_and_clone(upstream(a), keep=1)
    assert b.has_data() and kept.is_dir()


async def test_crash_recovery_then_rewind_is_safe_to_run_twice(
    pg_factory: ServerFactory,
) -> None:
    """A crashed former primary is brought to a clean shutdown, then rewound; the saved
    WAL lets a second pg_rewind (as after a kill -9 mid-rewind) run from the same start."""
    a, b = pg_factory("a"), pg_factory("b")
    await a.initdb()
    await a.start(standby=False)
    await a.query("CREATE TABLE t (id int primary key)")
    await b.clone(upstream(a))
    await b.start(upstream=upstream(a))
    await eventually(lambda: _streams(a, "b"), "b streams from a")
    await b.promote()
    await a.query("INSERT INTO t SELECT generate_series(1, 1000)")  # a diverges
    a.kill()
    await asyncio.sleep(0.5)
    disk = await a.disk()
    assert disk.position is None  # crashed: where its WAL ends is unknown
    await a.crash_recover()
    disk = await a.disk()
    assert disk.state == "shut down" and disk.position is not None
    await b.query("CHECKPOINT")
    await a.rewind(upstream(b))
    # As if killed right after pg_rewind: the saved WAL is still there.
    from spofless.pg._repair import save_wal

    save_wal(a.data_dir, None, 16 * 1024 * 1024)
    assert a.rewinding
    await a.rewind(upstream(b))  # finished already: it notices, and cleans up
    assert not a.rewinding
    await a.start(upstream=upstream(b))
    await eventually(lambda: _streams(b, "a"), "a streams from b after the rewind")
    assert (await a.query("SELECT count(*) FROM t"))[0][0] == 0


async def _streams(primary: PostgresServer, name: str) -> bool:
    st = await primary.status()
    return any(r.name == name and r.state == "streaming" for r in st.replication)


async def test_a_killed_postmasters_leftovers_are_killed_before_the_next_start(
    pg_base_dir: Path,
) -> None:
    """kill -9 of the postmaster while its archiver waits on `archive_command`: the
    archiver (its own session) and the command outlive it and keep the old shared memory
    attached. The next start kills them first, and starts."""
    from free_ports import free_port

    from spofless.pg._datadir import leftovers

    server = PostgresServer(
        ServerSettings(
            name="arch",
            data_dir=pg_base_dir / "arch",
            port=free_port(),
            start_timeout=30,
            parameters={"archive_mode": "on", "archive_command": "sleep 120"},
        )
    )
    left: list[int] = []
    try:
        await server.initdb()
        await server.start(standby=False)
        await server.query("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        await server.query("SELECT pg_switch_wal()")

        def waiting() -> list[int]:
            out = []
            for p in leftovers(server.data_dir):
                # A process of the server may end between the listing and this look.
                with contextlib.suppress(psutil.Error):
                    if p.name() == "sleep":
                        out.append(p.pid)
            return out

        deadline = time.monotonic() + 30
        while not waiting():
            assert time.monotonic() < deadline, "the archiver never ran its command"
            await asyncio.sleep(0.1)
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(_stopped(server), "the postmaster reaped")
        left = [p.pid for p in leftovers(server.data_dir)]
        assert waiting() and len(left) >= 2, left  # the archiver and its sleep at least
        await server.start(standby=False)
        assert not any(alive(p) for p in left)
        assert (await server.query("SELECT count(*) FROM t"))[0][0] == 1
    finally:
        with contextlib.suppress(Exception):
            await server.stop("immediate")
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def _stopped(server: PostgresServer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not server.running

    return check
