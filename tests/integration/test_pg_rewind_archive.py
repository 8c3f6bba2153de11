"""pg_rewind finds the WAL it needs in the archive: a diverged old primary whose own WAL
since the last common checkpoint was recycled is rewound with --restore-target-wal,
its restore_command fetching the segments back from the backup repository."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from backup_pg import pg_command

from spofless.pg import PostgresServer, ServerSettings, Upstream, archive_settings
from spofless.pg._errors import PgCommandError
from spofless.topology import load_topology

pytestmark = pytest.mark.integration


def _upstream(s: PostgresServer) -> Upstream:
    return Upstream(s.name, s.settings.host, s.settings.port)


async def _eventually(check, what: str, limit: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit}s: {what}")
        await asyncio.sleep(0.2)


async def test_rewind_fetches_recycled_wal_from_the_archive(pg_base_dir: Path) -> None:
    from free_ports import port_block

    base = pg_base_dir
    port = port_block(2)
    (base / "key").write_bytes(os.urandom(32))
    (base / "repo").mkdir()
    topology = base / "shop.yaml"
    topology.write_text(
        f"""name: shop
components:
  db:
    kind: postgres
    instances: 2
    port: {port}
    backup:
      repositories: [{{type: fs, path: {base}/repo}}]
      encryption: {{key_file: {base}/key}}
      command: {json.dumps(pg_command())}
entry: [db]
"""
    )
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in (base / "key", base / "repo", topology):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    params = archive_settings(load_topology(topology), "db")
    assert "--restore-target-wal" not in str(params) and "restore-wal" in params["restore_command"]

    def server(name: str, offset: int) -> PostgresServer:
        return PostgresServer(
            ServerSettings(
                name=name,
                data_dir=base / name,
                port=port + offset,
                start_timeout=60,
                parameters=params,
            )
        )

    a, b = server("a", 0), server("b", 1)
    try:
        await a.initdb()
        await a.start(standby=False)
        await a.query("CREATE TABLE t (id int PRIMARY KEY, pad text)")
        await b.clone(_upstream(a))
        await b.start(upstream=_upstream(a))

        async def b_streams() -> bool:
            st = await a.status()
            return any(r.name == "b" and r.state == "streaming" for r in st.replication)

        await _eventually(b_streams, "b streams from a")
        await b.promote()
        # a diverges by several WAL segments, archived as they fill.
        for i in range(4):
            await a.query(
                "INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(%s::int, %s::int) g",
                (i * 20000 + 1, (i + 1) * 20000),
                limit=60,
            )
            await a.query("SELECT pg_switch_wal()")

        async def archived() -> bool:
            rows = await a.query("SELECT archived_count, failed_count FROM pg_stat_archiver")
            return int(rows[0][0]) >= 6

        await _eventually(archived, "a's WAL archived", 120)
        a.kill()
        await asyncio.sleep(0.5)
        await a.crash_recover()
        # Recycled: every archived segment leaves a's pg_wal (crash recovery no longer needs
        # them; pg_rewind does, from the last common checkpoint on).
        ready = {
            p.name.split(".")[0] for p in (a.data_dir / "pg_wal" / "archive_status").glob("*.done")
        }
        gone = [p for p in (a.data_dir / "pg_wal").iterdir() if p.name in ready]
        assert gone, "nothing was archived"
        for p in gone:
            p.unlink()
        await b.query("CHECKPOINT")
        # Without the archive, pg_rewind cannot read the WAL it needs: the test can fail.
        plain = PostgresServer(a.settings.model_copy(update={"parameters": {}}))
        with pytest.raises(PgCommandError, match="pg_rewind failed"):
            await plain.rewind(_upstream(b))
        await a.rewind(_upstream(b))  # its saved WAL put back, then with the archive
        await a.start(upstream=_upstream(b))

        async def a_streams() -> bool:
            st = await b.status()
            return any(r.name == "a" and r.state == "streaming" for r in st.replication)

        await _eventually(a_streams, "a streams from b after a rewind from the archive")
        assert (await a.query("SELECT count(*) FROM t"))[0][0] == 0  # b's rows: none
    finally:
        for s in (a, b):
            await s.stop("immediate")
