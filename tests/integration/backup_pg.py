"""Helpers for backup tests against real PostgreSQL 15: a server archiving through
`spofless backup archive-wal` into an encrypted fs repository, a writer, restores.

Run as root, PostgreSQL and its archive_command run as the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from free_ports import free_port

import spofless
from spofless.backup import archive_command

BIN = Path("/usr/lib/postgresql/15/bin")


# Credentials for the test S3 server (moto accepts any).
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def pg_command() -> list[str]:
    """How the postgres OS user runs this spofless (this interpreter may sit under /root)."""
    creds = [f"{k}={v}" for k, v in S3_ENV.items()]
    if os.geteuid() != 0:
        return ["env", *creds, sys.executable, "-m", "spofless"]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"no {system} for the postgres user to run spofless with")
    src = Path(spofless.__file__).resolve().parents[1]
    path = ":".join([str(src), *site.getsitepackages()])
    return ["env", *creds, f"PYTHONPATH={path}", str(system), "-m", "spofless"]


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server (moto[server]) in its own process on 127.0.0.1; yields its URL."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.skip("moto[server] not installed")
    port = free_port()
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, **S3_ENV),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url + "/moto-api/", timeout=1)
                break
            assert proc.poll() is None, "moto_server exited"
            assert time.monotonic() < deadline, "moto_server did not listen within 30s"
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pg_owner() -> pwd.struct_passwd | None:
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def as_pg(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    owner = pg_owner()
    if owner:
        kw.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    return subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=120, **kw)


def chown_tree(path: Path) -> None:
    owner = pg_owner()
    if owner:
        for p in [path, *path.rglob("*")]:
            os.chown(p, owner.pw_uid, owner.pw_gid)


@dataclass
class Env:
    base: Path
    topology: Path
    port: int
    repo: Path
    started: list[Path] = field(default_factory=list)

    def start(self, data: Path, port: int) -> None:
        self.started.append(data)
        start_pg(data, port, self.base)

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
        self, *args: str, topology: Path | None = None, tmpdir: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run spofless; `tmpdir`: its TMPDIR (where a scratch instance goes)."""
        argv = [sys.executable, "-m", "spofless", *args[:1], *args[1:]]
        argv = [a if a != "FILE" else str(topology or self.topology) for a in argv]
        env = dict(os.environ, **S3_ENV)
        if tmpdir is not None:
            env["TMPDIR"] = str(tmpdir)
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)

    def switch_and_wait_archived(self, port: int | None = None) -> str:
        """Close the current segment and wait until archive_command succeeded for it
        (so every repository holds it)."""
        name = str(self.sql("SELECT pg_walfile_name(pg_switch_wal())", port)[0][0])
        deadline = time.monotonic() + 60
        query = "SELECT last_archived_wal >= %s FROM pg_stat_archiver"
        while True:
            with self.connect(port) as conn:
                row = conn.execute(query.replace("%s", f"'{name}'")).fetchone()
            if row and row[0]:
                break
            assert time.monotonic() < deadline, f"{name} not archived within 60s"
            time.sleep(0.1)
        return name


def start_pg(data: Path, port: int, base: Path) -> None:
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {base}"
    out = as_pg(
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


def stop_pg(data: Path) -> None:
    pidfile = data / "postmaster.pid"
    pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
    as_pg([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_promoted(env: Env, port: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(psycopg.Error):
            if env.sql("SELECT pg_is_in_recovery()", port) == [(False,)]:
                return
        assert time.monotonic() < deadline, "restored server did not finish recovery"
        time.sleep(0.2)


@contextlib.contextmanager
def archiving_cluster(instances: int = 1, s3: str | None = None) -> Iterator[Env]:
    """A topology with one `db` component archiving into an encrypted fs repository, and
    its instance 0 running as the primary; every server started through the Env is stopped.
    With `s3` (a server URL), a second repository: a new bucket there."""
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 not installed")
    base = Path(tempfile.mkdtemp(prefix="spofless-backup-"))
    env: Env | None = None
    try:
        port = free_port()
        while instances > 1 and not _port_free(port + 1):
            port = free_port()
        (base / "key").write_bytes(os.urandom(32))
        (base / "repo").mkdir()
        command = pg_command()
        repos = f"{{type: fs, path: {base}/repo}}"
        if s3 is not None:
            bucket = f"b{time.monotonic_ns()}"
            boto3.client(
                "s3",
                endpoint_url=s3,
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            ).create_bucket(Bucket=bucket)
            repos += f", {{type: s3, bucket: {bucket}, endpoint: '{s3}', prefix: shop/}}"
        topology = base / "shop.yaml"
        topology.write_text(
            f"""name: shop
components:
  db:
    kind: postgres
    instances: {instances}
    port: {port}
    backup:
      repositories: [{repos}]
      encryption: {{key_file: {base}/key}}
      retention: {{full: 2}}
      command: {json.dumps(command)}
entry: [db]
"""
        )
        chown_tree(base)
        data = base / "data"
        out = as_pg([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"])
        assert out.returncode == 0, out.stderr
        with (data / "postgresql.conf").open("a") as f:
            f.write("archive_mode = on\n")
            cmd = archive_command(topology, "db", command).replace("'", "''")
            f.write(f"archive_command = '{cmd}'\n")
        env = Env(base, topology, port, base / "repo")
        env.start(data, port)
        yield env
    finally:
        if env is not None:
            for d in env.started:
                stop_pg(d)
        shutil.rmtree(base, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Writer(threading.Thread):
    """Inserts rows one transaction at a time, remembering each acknowledged id."""

    def __init__(self, env: Env, port: int | None = None) -> None:
        super().__init__(daemon=True)
        self.env, self.port, self.acked, self.halt = env, port, list[int](), threading.Event()

    def run(self) -> None:
        with self.env.connect(self.port) as conn:
            while not self.halt.is_set():
                row = conn.execute(
                    "INSERT INTO load (v) VALUES (repeat('x', 500)) RETURNING id"
                ).fetchone()
                assert row is not None
                self.acked.append(int(row[0]))


def restore_and_start(env: Env, name: str, *target: str) -> tuple[Path, int]:
    dest = env.base / name
    out = env.spofless("restore", "FILE", *target, "--to", str(dest), "--no-archive")
    assert out.returncode == 0, out.stderr
    assert "restored backup" in out.stdout and "files" in out.stderr  # progress lines
    port = free_port()
    env.start(dest, port)
    wait_promoted(env, port)
    return dest, port
