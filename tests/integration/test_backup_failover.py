"""Archiving across a failover: a backup from the replica, kill -9 of the primary,
promotion to timeline 2, then a restore to `latest` that follows the history file
and has every transaction that was archived, before and after the switch."""

from __future__ import annotations

import os
import signal
import time

import pytest
from backup_pg import BIN, Writer, archiving_cluster, as_pg, restore_and_start

pytestmark = pytest.mark.integration


def test_failover_during_archiving_then_restore_latest_follows_the_new_timeline() -> None:
    with archiving_cluster(instances=2) as env:
        env.sql("CREATE TABLE load (id bigserial PRIMARY KEY, v text)")
        env.sql("INSERT INTO load (v) SELECT 'seed' FROM generate_series(1, 1000)")
        # The replica: instance 1, streaming from instance 0, on port + 1.
        replica = env.base / "replica"
        out = as_pg(
            [
                str(BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(env.port),
                "-U",
                "postgres",
                "-D",
                str(replica),
                "-R",
                "-X",
                "stream",
            ]
        )
        assert out.returncode == 0, out.stderr
        env.start(replica, env.port + 1)
        assert env.sql("SELECT pg_is_in_recovery()", env.port + 1) == [(True,)]

        # `from: replica` (the default): the base backup is copied from instance 1.
        writer = Writer(env)
        writer.start()
        try:
            out = env.spofless("backup", "FILE", "--full")
            assert out.returncode == 0, out.stderr
            assert "of db/1" in out.stdout
        finally:
            writer.halt.set()
            writer.join(30)
        before = list(writer.acked)
        # Everything the primary acknowledged reaches the replica, then the primary dies
        # hard in the middle of a segment (its last segment is never archived by it).
        target = env.sql("SELECT pg_current_wal_lsn()")[0][0]
        deadline = time.monotonic() + 60
        while env.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'", env.port + 1) != [(True,)]:
            assert time.monotonic() < deadline, "replica did not catch up"
            time.sleep(0.1)
        pid = int((env.base / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

        out = as_pg([str(BIN / "pg_ctl"), "-D", str(replica), "-w", "promote"])
        assert out.returncode == 0, out.stderr
        after_writer = Writer(env, env.port + 1)
        after_writer.start()
        time.sleep(1.0)
        after_writer.halt.set()
        after_writer.join(30)
        assert after_writer.acked
        name = env.sql("SELECT pg_walfile_name(pg_switch_wal())", env.port + 1)[0][0]
        assert name.startswith("00000002")
        deadline = time.monotonic() + 60
        while not (env.repo / "db" / "wal" / name).exists():
            assert time.monotonic() < deadline, f"{name} not archived by the new primary"
            time.sleep(0.1)
        assert (env.repo / "db" / "wal" / "00000002.history").exists()
        # Nothing was refused across the switch (no same name with other content).
        assert env.sql("SELECT failed_count FROM pg_stat_archiver", env.port + 1) == [(0,)]

        _dest, port = restore_and_start(env, "after-failover", "--target", "latest")
        ids = {r[0] for r in env.sql("SELECT id FROM load", port)}
        assert set(before) <= ids
        assert set(after_writer.acked) <= ids
        assert env.sql("SELECT timeline_id FROM pg_control_checkpoint()", port)[0][0] >= 3
