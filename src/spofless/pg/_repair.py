"""The files around a data directory that make rejoining crash-safe: no decisions.

Beside `<data>` (the data directory) the agent may keep:

    <data>.rewind/        a pg_rewind in progress: the WAL files it may overwrite or
                          remove, saved before it starts. Present after a kill -9
                          mid-rewind: the next agent puts them back and runs pg_rewind
                          again from the same starting point.
    <data>.clone/         a pg_basebackup in progress; renamed to <data> only once
                          complete, so a killed clone never leaves a half data
                          directory that looks whole. Removed before the next clone
                          (it was never a data directory anyone ran).
    <data>.old-<time>/    a diverged data directory kept aside when the member was
                          re-cloned: never deleted by spofless; at most `keep` of them.

Why the saved WAL: pg_rewind copies the leader's WAL files over the member's and
removes those the leader lacks, so after an interrupted run the member's own
divergent WAL, which pg_rewind must read to know which blocks to fetch, is gone;
a second run would fail, or worse, miss blocks. With the files put back, the
second run sees exactly what the first saw (its control file is updated last, so
an unfinished run left the directory "shut down" as before).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

# The newest WAL files saved before a rewind, at most this much (divergence after a
# fault is a few megabytes; a rewind that needs more is re-cloned if interrupted).
SAVE_LIMIT = 512 * 1024 * 1024
_WAL_FILE = re.compile(r"^[0-9A-F]{24}(\.partial)?$|^[0-9A-F]{8}\.history$")


def rewind_dir(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".rewind")


def clone_dir(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".clone")


def save_wal(data_dir: Path, end: int | None, segment_size: int) -> int:
    """Copy the data directory's newest WAL files (and every history file) into
    `<data>.rewind/`, then mark it complete; the bytes saved. Segments past `end` (the
    end of its WAL) are recycled ones that hold nothing yet: skipped."""
    dest = rewind_dir(data_dir)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    wal = data_dir / "pg_wal"
    files = sorted((p for p in wal.iterdir() if _WAL_FILE.match(p.name)), reverse=True)
    saved = 0
    last = end // segment_size if end is not None else None
    for p in files:
        recycled = last is not None and _segno(p.name, segment_size) > last
        if recycled and not p.name.endswith(".history"):
            continue
        size = p.stat().st_size
        if not p.name.endswith(".history") and saved + size > SAVE_LIMIT:
            continue
        shutil.copy2(p, tmp / p.name)
        saved += size
    _fsync_dir(tmp)
    tmp.rename(dest)  # complete only once every file is there
    return saved


def _segno(name: str, segment_size: int) -> int:
    """The segment number of a WAL file name (its timeline aside), as LSN // size."""
    if len(name) < 24 or name.endswith(".history"):
        return 0
    return int(name[8:16], 16) * (0x100000000 // segment_size) + int(name[16:24], 16)


def restore_wal(data_dir: Path, owner: tuple[int, int]) -> int:
    """Put the saved WAL files back into pg_wal (over whatever a rewind left); how many."""
    src, wal = rewind_dir(data_dir), data_dir / "pg_wal"
    n = 0
    for p in src.iterdir():
        target = wal / p.name
        shutil.copy2(p, target)
        os.chown(target, *owner)
        n += 1
    return n


def forget_rewind(data_dir: Path) -> None:
    shutil.rmtree(rewind_dir(data_dir), ignore_errors=True)
    shutil.rmtree(rewind_dir(data_dir).with_name(rewind_dir(data_dir).name + ".tmp"), True)


def old_copies(data_dir: Path) -> list[Path]:
    """The diverged data directories kept aside, oldest first."""
    prefix = data_dir.name + ".old-"
    return sorted(p for p in data_dir.parent.glob(prefix + "*") if p.is_dir())


def directory_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total


def reclone_blocked(data_dir: Path, keep: int) -> str | None:
    """Why the data directory cannot be kept aside and re-cloned now, or None.

    Nothing is ever deleted to make room: the operator decides what goes.
    """
    copies = old_copies(data_dir)
    if len(copies) >= keep:
        return (
            f"{len(copies)} diverged data directories are kept already "
            f"({', '.join(p.name for p in copies)} in {data_dir.parent}), the most allowed: "
            "remove one you no longer need"
        )
    need = directory_size(data_dir) * 11 // 10 + 64 * 1024 * 1024
    free = shutil.disk_usage(data_dir.parent).free
    if free < need:
        return (
            f"{free // 2**20} MiB free in {data_dir.parent}, a new copy needs about "
            f"{need // 2**20} MiB (the old data directory is kept)"
        )
    return None


def keep_aside(data_dir: Path) -> Path:
    """Rename the data directory to `<data>.old-<UTC time>`; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = data_dir.with_name(f"{data_dir.name}.old-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = data_dir.with_name(f"{data_dir.name}.old-{stamp}-{n}")
    data_dir.rename(dest)
    return dest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
