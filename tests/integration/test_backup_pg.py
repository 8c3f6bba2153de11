"""Backups against a real PostgreSQL 15 archiving through `spofless backup archive-wal`.

One server for the module (it archives into an fs repository, encrypted), then:
a full backup under a write load, an incremental, restore to the latest point
(nothing archived is lost), restore to a time between two writes (exactly the
writes before it), verify (and verify --restore), a corrupted object failing
verify by name, and a wrong key failing clearly while changing nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from free_ports import free_port

import spofless
from spofless.backup import archive_command

pytestmark = pytest.mark.integration

BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_command() -> list[str]:
    """How the postgres OS user runs this spofless (this interpreter may sit under /root)."""
    if os.geteuid() != 0:
        return [sys.executable, "-m", "spofless"]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"no {system} for the postgres user to run spofless with")
    src = Path(spofless.__file__).resolve().parents[1]
    path = ":".join([str(src), *site.getsitepackages()])
    return ["env", f"PYTHONPATH={path}", str(system), "-m", "spofless"]


def _owner() -> pwd.struct_passwd | None:
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def _as_pg(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    owner = _owner()
    if owner:
        kw.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    return subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=120, **kw)


def _chown(path: Path) -> None:
    owner = _owner()
    if owner:
        for p in [path, *path.rglob("*")]:
            os.chown(p, owner.pw_uid, owner.pw_gid)


@dataclass
class Env:
    base: Path
    topology: Path
    port: int
    repo: Path

    def connect(self, port: int | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=port or self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )

    def sql(self, query: str, port: int | None = None) -> list[tuple[Any, ...]]:
        with self.connect(port) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def spofless(
        self, *args: str, topology: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "spofless", *args[:1], *args[1:]]
        argv = [a if a != "FILE" else str(topology or self.topology) for a in argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)

    def switch_and_wait_archived(self) -> str:
        """Close the current segment and wait until it is in the repository."""
        name = str(self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
        deadline = time.monotonic() + 60
        while not (self.repo / "db" / "wal" / name).exists():
            assert time.monotonic() < deadline, f"{name} not archived within 60s"
            time.sleep(0.1)
        return name


def _start(data: Path, port: int, base: Path) -> None:
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {base}"
    out = _as_pg(
        [
            str(BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(data.parent / f"{data.name}.log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    assert out.returncode == 0, out.stderr + out.stdout


def _stop(data: Path) -> None:
    pidfile = data / "postmaster.pid"
    pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
    _as_pg([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_promoted(env: Env, port: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(psycopg.Error):
            if env.sql("SELECT pg_is_in_recovery()", port) == [(False,)]:
                return
        assert time.monotonic() < deadline, "restored server did not finish recovery"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 not installed")
    base = Path(tempfile.mkdtemp(prefix="spofless-backup-"))
    started: list[Path] = []
    try:
        port = free_port()
        (base / "key").write_bytes(os.urandom(32))
        (base / "repo").mkdir()
        command = _pg_command()
        topology = base / "shop.yaml"
        topology.write_text(
            f"""name: shop
components:
  db:
    kind: postgres
    instances: 1
    port: {port}
    backup:
      repositories: [{{type: fs, path: {base}/repo}}]
      encryption: {{key_file: {base}/key}}
      retention: {{full: 2}}
      command: {json.dumps(command)}
entry: [db]
"""
        )
        _chown(base)
        data = base / "data"
        out = _as_pg([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"])
        assert out.returncode == 0, out.stderr
        with (data / "postgresql.conf").open("a") as f:
            f.write("archive_mode = on\n")
            cmd = archive_command(topology, "db", command).replace("'", "''")
            f.write(f"archive_command = '{cmd}'\n")
        started.append(data)
        _start(data, port, base)
        yield Env(base, topology, port, base / "repo")
    finally:
        for d in started:
            _stop(d)
        shutil.rmtree(base, ignore_errors=True)


class Writer(threading.Thread):
    """Inserts rows one transaction at a time, remembering each acknowledged id."""

    def __init__(self, env: Env) -> None:
        super().__init__(daemon=True)
        self.env, self.acked, self.halt = env, list[int](), threading.Event()

    def run(self) -> None:
        with self.env.connect() as conn:
            while not self.halt.is_set():
                row = conn.execute(
                    "INSERT INTO load (v) VALUES (repeat('x', 500)) RETURNING id"
                ).fetchone()
                assert row is not None
                self.acked.append(int(row[0]))


def _restore(env: Env, name: str, *target: str) -> tuple[Path, int]:
    dest = env.base / name
    out = env.spofless("restore", "FILE", *target, "--to", str(dest), "--no-archive")
    assert out.returncode == 0, out.stderr
    assert "restored backup" in out.stdout and "files" in out.stderr  # progress lines
    port = free_port()
    _start(dest, port, env.base)
    _wait_promoted(env, port)
    return dest, port


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

    dest, port = _restore(env, "latest", "--target", "latest")
    try:
        ids = {r[0] for r in env.sql("SELECT id FROM load", port)}
        assert set(writer.acked) <= ids
        assert len(ids) == 20000 + len(writer.acked)
    finally:
        _stop(dest)


def test_incremental_then_restore_to_a_time_between_two_writes(env: Env) -> None:
    env.sql("CREATE TABLE marks (name text)")
    out = env.spofless("backup", "FILE", "--incremental")
    assert out.returncode == 0, out.stderr
    assert "(incremental)" in out.stdout
    # Only changed files were uploaded.
    new_mb, total_mb = (
        float(out.stdout.split(", ")[-1].split()[0]),
        float(out.stdout.split(", ")[-2].split()[0]),
    )
    assert new_mb < total_mb / 2
    env.sql("INSERT INTO marks VALUES ('before')")
    time.sleep(0.5)
    between = env.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    )[0][0]
    time.sleep(0.5)
    env.sql("INSERT INTO marks VALUES ('after')")
    env.switch_and_wait_archived()
    dest, port = _restore(env, "pitr", "--target-time", str(between))
    try:
        assert env.sql("SELECT name FROM marks", port) == [("before",)]
    finally:
        _stop(dest)


def test_target_time_before_the_oldest_backup_is_refused(env: Env) -> None:
    dest = env.base / "too-early"
    out = env.spofless("restore", "FILE", "--target-time", "2000-01-01 00:00:00", "--to", str(dest))
    assert out.returncode == 2
    assert "before the end of the oldest backup" in out.stderr
    assert not dest.exists()


def test_verify_and_verify_restore(env: Env) -> None:
    out = env.spofless("backup", "verify", "FILE", "--restore")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": ok") == 2 and "restore: started, promoted" in out.stdout


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


def test_corrupted_file_fails_verify_naming_it(env: Env) -> None:
    victim = next(p for p in sorted(env.repo.rglob("files/base/*/*")) if p.stat().st_size > 100)
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    victim.write_bytes(bytes(blob))
    out = env.spofless("backup", "verify", "FILE")
    assert out.returncode == 1
    key = victim.relative_to(env.repo).as_posix()
    assert f"{key}: damaged" in out.stdout
