"""`backup verify`: every file checksum, every WAL segment a backup needs; optionally a
real restore into a scratch instance that is started and queried.

A problem is reported with the repository key it concerns (a damaged or
missing object names its file); verify never changes the repository.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spofless.backup._errors import BackupError, ObjectNotFoundError
from spofless.backup._manifest import FileEntry, Manifest
from spofless.backup._restore import SPOOL, restore
from spofless.backup._scratch import ScratchInstance
from spofless.backup._store import Store
from spofless.backup.plan import (
    Target,
    latest_timeline,
    needed_segments,
    timeline_path,
    unreachable_segments,
)


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


def archive_gap(store: Store, manifest: Manifest) -> str | None:
    """A gap in the WAL after `manifest` on the latest timeline: a problem sentence, or None."""
    histories = store.histories()
    tli = latest_timeline(histories, [manifest.info()])
    seg_size = manifest.wal_segment_size
    missing, beyond = unreachable_segments(
        manifest.start_lsn, timeline_path(tli, histories), store.segments(), seg_size
    )
    if missing is None:
        return None
    return (
        f"WAL gap: {store.wal_key(missing.name(seg_size))} is missing, so the "
        f"{len(beyond)} segment(s) archived after it (up to {beyond[-1].name(seg_size)}) "
        "cannot be restored to"
    )


def restore_check(
    store: Store,
    manifest: Manifest,
    restore_command_for: Callable[[Path], str] | None = None,
    *,
    os_user: str | None,
    parallel: int = 2,
    timeout: float = 300.0,
) -> str:
    """Restore `manifest` into a scratch instance, start it, run a query; it is removed after.

    `restore_command_for(spool)` gives the restore_command (default: the spool only).
    Returns what it answered.
    """
    with ScratchInstance(manifest.pg_version, os_user, timeout) as scratch:
        restore(
            store,
            Target("immediate"),
            scratch.data,
            restore_command=(
                restore_command_for(scratch.data / SPOOL) if restore_command_for else None
            ),
            parallel=parallel,
            owner=scratch.owner,
            archive=False,
            tablespaces_under=scratch.dir,
            label=manifest.label,
        )
        scratch.start()
        scratch.wait_promoted()
        count = scratch.query("SELECT count(*) FROM pg_database")
        return f"started, promoted, {count} databases"
