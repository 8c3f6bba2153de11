"""Backups against a real PostgreSQL 15 archiving through `spofless backup archive-wal`.

One server for the module, archiving into two repositories (a directory, and a
bucket on moto's S3 server), both encrypted. Then: a full backup under a write
load, restore to the latest point (nothing archived is lost), the same from the
S3 repository, an incremental, restore to a time between two writes (exactly
the writes before it), verify (and verify --restore), a wrong key failing
clearly while changing nothing, a corrupted object failing verify by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_pg import (
    S3_ENV,
    Env,
    Writer,
    archiving_cluster,
    chown_tree,
    restore_and_start,
    s3_server,
    stop_pg,
    wait_promoted,
)
from free_ports import free_port

from spofless.backup import backup_config
from spofless.topology import load_topology

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """Two repositories: a directory (repository 0) and a bucket on an S3 server."""
    with s3_server() as url, archiving_cluster(s3=url) as e:
        yield e


def test_backup_under_load_then_restore_latest_loses_nothing_archived(env: Env) -> None:
    env.sql("CREATE TABLE load (id bigserial PRIMARY KEY, v text)")
    env.sql("INSERT INTO load (v) SELECT repeat('y', 500) FROM generate_series(1, 20000)")
    writer = Writer(env)
    writer.start()
    try:
        out = env.spofless("backup", "FILE", "--full")
        assert out.returncode == 0, out.stderr
        assert "(full)" in out.stdout
    finally:
        writer.halt.set()
        writer.join(30)
    assert len(writer.acked) > 10
    env.switch_and_wait_archived()
    listing = env.spofless("backup", "list", "FILE")
    assert listing.returncode == 0 and "full" in listing.stdout, listing.stderr

    dest, port = restore_and_start(env, "latest", "--target", "latest")
    try:
        ids = {r[0] for r in env.sql("SELECT id FROM load", port)}
        assert set(writer.acked) <= ids
        assert len(ids) == 20000 + len(writer.acked)
    finally:
        stop_pg(dest)


def test_incremental_then_restore_to_a_time_between_two_writes(env: Env) -> None:
    env.sql("CREATE TABLE marks (name text)")
    out = env.spofless("backup", "FILE", "--incremental")
    assert out.returncode == 0, out.stderr
    assert "(incremental)" in out.stdout
    # Only changed parts were uploaded: an untouched catalog comes from the full backup,
    # the new table from this one.
    store = backup_config(load_topology(env.topology)).stores[0]
    full, incr = store.manifests()[-2:]
    assert incr.kind == "incremental" and incr.parent == full.label
    files = {f.path: f for f in incr.files}
    proc = env.sql("SELECT pg_relation_filepath('pg_proc')")[0][0]
    marks = env.sql("SELECT pg_relation_filepath('marks')")[0][0]
    assert {p.ref for p in files[proc].parts} == {full.label}
    assert {p.ref for p in files[marks].parts} == {incr.label}
    assert incr.new_bytes < full.new_bytes
    env.sql("INSERT INTO marks VALUES ('before')")
    time.sleep(0.5)
    between = env.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    )[0][0]
    time.sleep(0.5)
    env.sql("INSERT INTO marks VALUES ('after')")
    env.switch_and_wait_archived()
    dest, port = restore_and_start(env, "pitr", "--target-time", str(between))
    try:
        assert env.sql("SELECT name FROM marks", port) == [("before",)]
    finally:
        stop_pg(dest)


def test_restore_from_the_s3_repository_matches(env: Env) -> None:
    want = env.sql("SELECT count(*), max(id) FROM load")
    env.switch_and_wait_archived()
    dest = env.base / "from-s3"
    out = env.spofless("restore", "FILE", "--repo", "1", "--to", str(dest), "--no-archive")
    assert out.returncode == 0, out.stderr
    port = free_port()
    env.start(dest, port)
    wait_promoted(env, port)
    try:
        assert env.sql("SELECT count(*), max(id) FROM load", port) == want
    finally:
        stop_pg(dest)


def test_target_time_before_the_oldest_backup_is_refused(env: Env) -> None:
    dest = env.base / "too-early"
    out = env.spofless("restore", "FILE", "--target-time", "2000-01-01 00:00:00", "--to", str(dest))
    assert out.returncode == 2
    assert "before the end of the oldest backup" in out.stderr
    assert not dest.exists()


def test_a_tablespace_is_backed_up_and_restored_where_the_map_says(env: Env) -> None:
    """Its files through the pg_tblspc link; restored where it was (refused here: the
    running server uses it) or where --tablespace-map says; the link points there."""
    space = env.base / "space"
    space.mkdir(mode=0o700)
    chown_tree(space)
    env.sql(f"CREATE TABLESPACE extra LOCATION '{space}'")
    oid = str(env.sql("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'")[0][0])
    env.sql("CREATE TABLE spaced (v int) TABLESPACE extra")
    env.sql("INSERT INTO spaced SELECT generate_series(1, 1000)")
    out = env.spofless("backup", "FILE", "--full")
    assert out.returncode == 0, out.stderr
    env.sql("INSERT INTO spaced SELECT generate_series(1001, 1500)")
    env.switch_and_wait_archived()
    store = backup_config(load_topology(env.topology)).stores[0]
    m = store.manifests()[-1]
    assert m.tablespaces == {oid: str(space.resolve())}
    assert any(f.path.startswith(f"pg_tblspc/{oid}/PG_") for f in m.files)

    dest = env.base / "spaced"
    out = env.spofless("restore", "FILE", "--target", "latest", "--to", str(dest))
    assert out.returncode == 2 and f"--tablespace-map {oid}=" in out.stderr, out.stderr
    assert not dest.exists()
    moved = env.base / "space-restored"
    dest, port = restore_and_start(
        env, "spaced", "--target", "latest", "--tablespace-map", f"{oid}={moved}"
    )
    try:
        assert (dest / "pg_tblspc" / oid).resolve() == moved.resolve()
        assert env.sql("SELECT count(*) FROM spaced", port) == [(1500,)]
        where = env.sql(f"SELECT pg_tablespace_location({oid})", port)[0][0]
        assert Path(where).resolve() == moved.resolve()
    finally:
        stop_pg(dest)
    # The drills and verify --restore below restore it too, into their scratch directory.


def test_restore_drill_measures_rto_per_phase_and_rpo(env: Env) -> None:
    """RPO is read from the primary's WAL after the restored point: 0 for an idle database
    with everything archived (no `track_commit_timestamp` here), the lost commits else."""
    # No autovacuum commit may land between the archive and the drill's start.
    env.sql("ALTER SYSTEM SET autovacuum = off")
    env.sql("SELECT pg_reload_conf()")
    try:
        env.sql("INSERT INTO marks VALUES ('drill')")
        env.switch_and_wait_archived()
        time.sleep(2)  # idle: the primary's clock runs on, nothing is committed
        lines = _drill(env)
        rto = float(lines["RTO"].split()[1])
        assert 0 < rto < 300
        assert lines["RPO"].split()[1:4] == ["0.000", "s", "(no"], lines["RPO"]
        # A commit the archive does not hold yet (its segment is not full) is lost.
        env.sql("INSERT INTO marks VALUES ('not archived')")
        lines = _drill(env)
        assert "1 commit lost" in lines["RPO"], lines["RPO"]
        rpo = float(lines["RPO"].split()[1])
        assert 0 < rpo < 60
    finally:
        env.sql("ALTER SYSTEM RESET autovacuum")
        env.sql("SELECT pg_reload_conf()")


def _drill(env: Env) -> dict[str, str]:
    # A TMPDIR of its own: the check below must not see another test's scratch instance.
    scratch = env.base / "drill-tmp"
    scratch.mkdir(mode=0o755, exist_ok=True)
    scratch.chmod(0o755)
    out = env.spofless("backup", "drill", "FILE", tmpdir=scratch)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert set(lines) >= {"fetch", "replay", "first", "RTO", "RPO"}
    assert not list(scratch.glob("spofless-scratch-*")), "the scratch instance was left"
    return lines


def test_verify_and_verify_restore(env: Env) -> None:
    out = env.spofless("backup", "verify", "FILE", "--restore")
    assert out.returncode == 0, out.stdout + out.stderr
    # The full and incremental of the first tests, the tablespace's full (restored into
    # the scratch directory: the running server uses its own).
    assert out.stdout.count(": ok") == 3 and "restore: started, promoted" in out.stdout


def test_wrong_key_fails_clearly_and_changes_nothing(env: Env) -> None:
    wrong = env.base / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    other = env.base / "wrong.yaml"
    other.write_text(env.topology.read_text().replace(f"{env.base}/key", str(wrong)))
    before = sorted((p, p.stat().st_mtime_ns) for p in env.repo.rglob("*"))
    dest = env.base / "wrong-restore"
    for args in (
        ["backup", "list", "FILE"],
        ["restore", "FILE", "--to", str(dest)],
        ["backup", "verify", "FILE"],
    ):
        out = env.spofless(*args, topology=other)
        assert out.returncode in (1, 2), out.stdout
        assert "another key" in out.stderr + out.stdout
    assert not dest.exists()
    assert sorted((p, p.stat().st_mtime_ns) for p in env.repo.rglob("*")) == before


def test_backup_run_takes_the_due_backup_and_stops_on_sigterm(env: Env) -> None:
    sched = env.base / "scheduled.yaml"
    sched.write_text(
        env.topology.read_text().replace(
            "      retention: {full: 2}\n",
            "      retention: {full: 1}\n      schedule: {full: '* * * * *'}\n",
        )
    )
    before = set(env.repo.glob("db/backup/*/manifest"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "spofless", "backup", "run", str(sched)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **S3_ENV),
    )
    try:
        deadline = time.monotonic() + 120
        while not set(env.repo.glob("db/backup/*/manifest")) - before:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no scheduled backup within 120s: {_tail(proc)}"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "took full backup" in err
    # Retention (1 full backup) expired the older full ones and the incremental.
    new = set(env.repo.glob("db/backup/*/manifest")) - before
    assert set(env.repo.glob("db/backup/*/manifest")) == new
    assert f"expire {len(before)} backup(s)" in err


def test_corrupted_file_fails_verify_naming_it(env: Env) -> None:
    victim = next(p for p in sorted(env.repo.rglob("files/base/*/*")) if p.stat().st_size > 100)
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    victim.write_bytes(bytes(blob))
    out = env.spofless("backup", "verify", "FILE")
    assert out.returncode == 1
    key = victim.relative_to(env.repo).as_posix()
    assert f"{key}: damaged" in out.stdout


def _tail(proc: subprocess.Popen[str]) -> str:
    """What a process still running printed so far: stopped to read it."""
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    return err[-3000:]
