"""A throw-away PostgreSQL instance for `verify --restore` and restore drills.

It listens on a private Unix socket only (no TCP), runs as the PostgreSQL OS
user when we are root, never archives, and is stopped (immediate) and removed
when the `with` block ends, whatever happened; one on a given data directory
(a restore as a new cluster) keeps that directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from spofless.backup._errors import BackupError


def pg_bindir(pg_version: str) -> Path:
    """The binaries of the PostgreSQL major version a backup was taken from."""
    major = int(pg_version) // 10000
    for cand in (Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/usr/pgsql-{major}/bin")):
        if (cand / "pg_ctl").exists():
            return cand
    raise BackupError(f"PostgreSQL {major} binaries (pg_ctl) not found to start a scratch instance")


class ScratchInstance:
    """`with ScratchInstance(version, os_user) as s:` restore into `s.data`, then `s.start()`."""

    def __init__(
        self,
        pg_version: str,
        os_user: str | None,
        timeout: float = 300.0,
        *,
        data: Path | None = None,
    ) -> None:
        """`data`: run on this data directory, which is stopped cleanly and kept (a
        restore as a new cluster); by default a new one in the scratch directory."""
        self.bindir = pg_bindir(pg_version)
        self.keep = data is not None
        self.owner = pwd.getpwnam(os_user or "postgres") if os.geteuid() == 0 else None
        self.timeout = timeout
        self.dir = Path(tempfile.mkdtemp(prefix="spofless-scratch-"))
        if self.owner:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        self.data = data if data is not None else self.dir / "data"
        self._kw: dict[str, Any] = {"cwd": "/"}
        if self.owner:
            self._kw.update(user=self.owner.pw_uid, group=self.owner.pw_gid, extra_groups=[])
        self.port = 5432  # a Unix socket in our own directory: no port is shared

    def __enter__(self) -> ScratchInstance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self, mode: str = "fast") -> None:
        """Stop it (`fast`: a clean shutdown, checkpointed); bounded by 60 s."""
        out = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            capture_output=True,
            timeout=70,
            **self._kw,
        )
        if out.returncode != 0 and mode != "immediate":
            raise BackupError(f"stopping {self.data} failed: {out.stderr.strip()}")

    def log_tail(self) -> str:
        log = self.dir / "log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def start(self) -> None:
        """Start it; returns once it accepts connections (recovery may still run)."""
        opts = f"-p {self.port} -c listen_addresses='' -k {self.dir} -c archive_mode=off"
        out = subprocess.run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.dir / "log"),
                "-w",
                "-t",
                str(int(self.timeout)),
                "start",
            ],
            capture_output=True,
            timeout=self.timeout + 10,
            **self._kw,
        )
        if out.returncode != 0:
            raise BackupError(f"scratch instance failed to start: {self.log_tail()}")

    def query(self, sql: str) -> str | None:
        """The first row of `sql` as psql's unaligned text, or None if it cannot run yet."""
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                str(self.dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtc",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            **self._kw,
        )
        return out.stdout.strip() if out.returncode == 0 else None

    def wait_promoted(self) -> None:
        """Wait (bounded by the timeout) until recovery ended and it accepts writes."""
        deadline = time.monotonic() + self.timeout
        while self.query("SELECT pg_is_in_recovery()") != "f":
            if time.monotonic() > deadline:
                raise BackupError(f"scratch instance did not finish recovery: {self.log_tail()}")
            if not (self.data / "postmaster.pid").exists():
                raise BackupError(f"scratch instance stopped during recovery: {self.log_tail()}")
            time.sleep(0.1)
