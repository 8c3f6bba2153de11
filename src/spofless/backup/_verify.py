"""`backup verify`: every file checksum, every WAL segment a backup needs; optionally a
real restore into a scratch instance that is started and queried.

A problem is reported with the repository key it concerns (a damaged or
missing object names its file); verify never changes the repository.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pwd
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spofless.backup._errors import BackupError, ObjectNotFoundError
from spofless.backup._manifest import FileEntry, Manifest
from spofless.backup._restore import restore
from spofless.backup._store import Store
from spofless.backup.plan import Target, needed_segments, timeline_path


@dataclass
class VerifyResult:
    label: str
    files: int = 0
    segments: int = 0
    problems: list[str] = field(default_factory=list)
    restored: str | None = None  # what the scratch instance answered

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_backup(store: Store, manifest: Manifest, parallel: int = 2) -> VerifyResult:
    """Check every file object against its checksum and that the backup's WAL is archived."""
    result = VerifyResult(manifest.label)

    units = [(f, i) for f in manifest.files for i in range(len(f.parts))]

    def check_part(unit: tuple[FileEntry, int]) -> str | None:
        try:
            store.read_part(*unit)
        except ObjectNotFoundError as exc:
            return str(exc)
        except BackupError as exc:
            return str(exc)
        return None

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for problem in pool.map(check_part, units):
            if problem:
                result.problems.append(problem)
    result.files = len(manifest.files)
    try:
        path = timeline_path(manifest.timeline, store.histories())
    except BackupError as exc:
        result.problems.append(str(exc))
        return result
    for seg in needed_segments(
        manifest.start_lsn, manifest.stop_lsn, path, manifest.wal_segment_size
    ):
        key = store.wal_key(seg.name(manifest.wal_segment_size))
        result.segments += 1
        try:
            store.read(key)
        except ObjectNotFoundError:
            result.problems.append(f"{key}: missing (WAL the backup needs to be consistent)")
        except BackupError as exc:
            result.problems.append(str(exc))
    return result


def pg_bindir(pg_version: str) -> Path:
    """The binaries of the PostgreSQL major version a backup was taken from."""
    major = int(pg_version) // 10000
    for cand in (Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/usr/pgsql-{major}/bin")):
        if (cand / "pg_ctl").exists():
            return cand
    raise BackupError(f"PostgreSQL {major} binaries (pg_ctl) not found to start a scratch instance")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def restore_check(
    store: Store,
    manifest: Manifest,
    restore_command_for: object,
    *,
    os_user: str | None,
    parallel: int = 2,
    timeout: float = 300.0,
) -> str:
    """Restore `manifest` into a scratch directory, start it, run a query, stop it, remove it.

    `restore_command_for(spool)` gives the restore_command. Returns the query's answer.
    """
    assert callable(restore_command_for)
    owner = pwd.getpwnam(os_user or "postgres") if os.geteuid() == 0 else None
    bindir = pg_bindir(manifest.pg_version)
    scratch = Path(tempfile.mkdtemp(prefix="spofless-verify-"))
    if owner:
        os.chown(scratch, owner.pw_uid, owner.pw_gid)
    data = scratch / "data"
    kw: dict[str, Any] = {"cwd": "/"}
    if owner:
        kw.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    port = _free_port()
    try:
        restore(
            store,
            Target("immediate"),
            data,
            restore_command=restore_command_for(data / "pg_wal/spofless-spool"),
            parallel=parallel,
            owner=owner,
            archive=False,
            label=manifest.label,
        )
        opts = f"-p {port} -c listen_addresses='' -k {scratch} -c archive_mode=off"
        subprocess.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(scratch / "log"),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=timeout + 10,
            **kw,
        )
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                [
                    str(bindir / "psql"),
                    "-h",
                    str(scratch),
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-Atc",
                    "SELECT pg_is_in_recovery(), count(*) FROM pg_database",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                **kw,
            )
            if out.returncode == 0 and out.stdout.startswith("f|"):
                return f"started, promoted, {out.stdout.strip().split('|')[1]} databases"
            if time.monotonic() > deadline:
                raise BackupError(f"scratch instance did not finish recovery: {out.stderr.strip()}")
            time.sleep(0.2)
    except subprocess.CalledProcessError:
        log = (
            (scratch / "log").read_text(errors="replace")[-2000:]
            if (scratch / "log").exists()
            else ""
        )
        raise BackupError(f"scratch instance of {manifest.label} failed to start: {log}") from None
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                **kw,
            )
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
