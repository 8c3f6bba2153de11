"""Restoring a base backup into a new data directory, set up to replay WAL to a target.

The base backup is chosen by spofless.backup.plan; its files are fetched in
parallel (each checked against the manifest's checksum), the WAL segments
replay will read, and every timeline history file, are prefetched in parallel
into a spool under pg_wal, which a shell restore_command links them from (so
replay never waits on a fetch, and PostgreSQL's OS user needs neither spofless
nor the key), and `recovery.signal` plus recovery settings in
`postgresql.auto.conf` make the first start replay to the target and promote;
the spool is removed when recovery ends (recovery_end_command).

Refused, with nothing written: a target directory that exists and is not
empty; a target no backup serves (TargetError, e.g. a time before the oldest
backup's end). A damaged object stops the restore naming it; the partly
restored directory is left for inspection, never started.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import os
import pwd
import shlex
import time
from collections.abc import Mapping
from pathlib import Path

from spofless.backup._basebackup import Progress, ProgressFn
from spofless.backup._errors import BackupError, TargetError
from spofless.backup._manifest import Manifest
from spofless.backup._store import Store, write_atomic
from spofless.backup.plan import (
    Target,
    available_segments,
    choose_backup,
    latest_timeline,
    timeline_path,
)

logger = logging.getLogger(__name__)

SPOOL = "pg_wal/spofless-spool"
# Begins the lines a restore appends to postgresql.auto.conf (removed once recovered
# as a new cluster).
RECOVERY_MARK = "# spofless restore of backup"


def spool_restore_command(spool: Path) -> str:
    """The restore_command of a restored directory: the prefetched spool, nothing else.

    A shell command, so PostgreSQL's OS user needs no access to spofless, the key or
    the repository; a hard link (a copy across file systems), so a file asked for
    twice is there twice. A file not in the spool is "end of archive" (exit 1).
    """
    d = shlex.quote(str(spool))
    return f'f={d}/"%f"; [ -f "$f" ] || exit 1; ln -f "$f" "%p" 2>/dev/null || cp "$f" "%p"'


def recovery_settings(
    target: Target, restore_command: str, *, archive: bool, spool: Path | None = None
) -> list[str]:
    """The postgresql.auto.conf lines that make the first start replay to `target`.

    `spool`: removed once recovery ended (its WAL is then in the new timeline)."""

    def q(v: str) -> str:
        return "'" + v.replace("'", "''") + "'"

    lines = [f"restore_command = {q(restore_command)}"]
    if spool is not None:
        lines.append(f"recovery_end_command = {q('rm -rf ' + shlex.quote(str(spool)))}")
    lines += [
        f"recovery_target_timeline = {q(str(target.timeline) if target.timeline else 'latest')}",
    ]
    if target.kind == "time":
        assert target.time is not None
        when = datetime.datetime.fromtimestamp(target.time, datetime.UTC)
        lines.append(f"recovery_target_time = {q(when.isoformat(sep=' '))}")
    elif target.kind == "lsn":
        from spofless.backup.plan import format_lsn

        assert target.lsn is not None
        lines.append(f"recovery_target_lsn = {q(format_lsn(target.lsn))}")
    elif target.kind == "name":
        assert target.name is not None
        lines.append(f"recovery_target_name = {q(target.name)}")
    elif target.kind == "immediate":
        lines.append("recovery_target = 'immediate'")
    if target.kind != "latest":
        lines.append("recovery_target_action = 'promote'")
    if not archive:
        lines.append("archive_mode = 'off'")
    return lines


def restore(
    store: Store,
    target: Target,
    to: Path,
    *,
    restore_command: str | None = None,
    parallel: int = 2,
    owner: pwd.struct_passwd | None = None,
    progress: ProgressFn | None = None,
    archive: bool = True,
    label: str | None = None,
    phases: dict[str, float] | None = None,
    tablespace_map: Mapping[str, Path] | None = None,
    tablespaces_under: Path | None = None,
) -> Manifest:
    """Restore into `to` the backup that serves `target` (or backup `label`).

    `restore_command`: None (the default) replays only the WAL prefetched into the
    spool, which is every segment archived when the restore ran
    (`spool_restore_command`); a `spofless backup restore-wal` command also fetches
    from the repository what was archived later.

    `phases`, when given, gets the seconds spent fetching files (`files`) and
    prefetching WAL (`wal`), and the number of segments prefetched (`segments`).

    Tablespaces go back where they were, or where `tablespace_map` (OID -> directory)
    says, or with `tablespaces_under` into `tablespace-<oid>` there (a scratch copy
    beside a running server); each directory must be new or empty (TargetError,
    nothing written)."""
    started = time.monotonic()
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise BackupError(f"{to} exists and is not empty: restore into a new directory")
    manifests = {m.label: m for m in store.manifests()}
    histories = store.histories()
    if label is not None:
        if label not in manifests:
            raise TargetError(f"{store.name}: no backup {label}")
        chosen = manifests[label]
    else:
        chosen = manifests[
            choose_backup([m.info() for m in manifests.values()], target, histories).label
        ]
    logger.info("restoring backup %s (%s) into %s", chosen.label, chosen.kind, to)
    spaces = tablespace_dirs(chosen, tablespace_map or {}, tablespaces_under)

    to.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(to, 0o700)
    for rel, mode in chosen.directories:
        where = spaces.get(rel)
        if where is not None:  # a tablespace: its directory, and the link to it
            where.mkdir(parents=True, exist_ok=True, mode=mode)
            (to / rel).symlink_to(where, target_is_directory=True)
            continue
        (to / rel).mkdir(mode=mode, exist_ok=True)
    spool = to / SPOOL
    spool.mkdir(mode=0o700)

    # One unit of work per part, written at its offset: a large file uses every thread.
    # Files are created by the workers (creating a thousand files one after the other
    # took a tenth of a restore); those without a part (empty) here. In the manifest's
    # order: sorting the parts largest first made the small files' restore slower.
    units: list[tuple[int, int, int]] = []  # (file index, part index, offset)
    for n, f in enumerate(chosen.files):
        offset = 0
        for i, part in enumerate(f.parts):
            units.append((n, i, offset))
            offset += part.size
        if not f.parts:
            (to / f.path).touch(mode=0o600)
    prog = Progress(
        f"restore {chosen.label}", len(units), chosen.total_bytes, started=time.monotonic()
    )

    def fetch(unit: tuple[int, int, int]) -> int:
        n, i, offset = unit
        f = chosen.files[n]
        fd = os.open(to / f.path, os.O_WRONLY | os.O_CREAT, 0o600)
        pos = offset

        def write(view: memoryview) -> None:
            nonlocal pos
            while view:  # a regular file takes it whole, unless the disk is full
                done = os.pwrite(fd, view, pos)
                view, pos = view[done:], pos + done

        try:
            return store.read_part_into(f, i, write)
        finally:
            os.close(fd)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for size in pool.map(fetch, units):
            prog.add(size)
            if progress:
                progress(prog)
    for f in chosen.files:
        if os.stat(to / f.path).st_size != f.size:  # the parts do not add up: a bad manifest
            raise BackupError(f"{chosen.label}: {f.path} restored with the wrong size")
        os.chmod(to / f.path, f.mode)
        os.utime(to / f.path, (f.mtime, f.mtime))

    files_done = time.monotonic()
    tli = target.timeline or latest_timeline(histories, [chosen.info()])
    segs = available_segments(chosen.start_lsn, timeline_path(tli, histories), store.segments())
    if target.kind == "immediate":  # replay stops where the backup became consistent
        segs = [s for s in segs if s.segno <= chosen.stop_lsn // chosen.wal_segment_size]
    wal = Progress("prefetch WAL", len(segs), 0, started=time.monotonic())
    # Every history file: replay reads those of its timeline's path, and a promotion
    # picks a timeline no history file names yet (so it never reuses an archived one).
    for t in sorted(histories):
        name = f"{t:08X}.history"
        write_atomic(spool / name, store.read(store.wal_key(name)))

    def prefetch(i: int) -> int:
        name = segs[i].name(chosen.wal_segment_size)
        data = store.read(store.wal_key(name))
        write_atomic(spool / name, data)
        return len(data)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for size in pool.map(prefetch, range(len(segs))):
            wal.bytes_total += size
            wal.add(size)
            if progress:
                progress(wal)

    if phases is not None:
        phases.update(
            files=files_done - started, wal=time.monotonic() - files_done, segments=len(segs)
        )
    (to / "backup_label").write_text(chosen.backup_label)
    (to / "recovery.signal").write_text("")
    auto = to / "postgresql.auto.conf"
    spooled = restore_command is None
    if restore_command is None:
        restore_command = spool_restore_command(spool)
    # The timeline explicitly: with every history file spooled, `latest` could be one
    # this restore did not choose.
    lines = recovery_settings(
        dataclasses.replace(target, timeline=tli),
        restore_command,
        archive=archive,
        spool=spool if spooled else None,
    )
    with auto.open("a") as conf:
        conf.write(f"\n{RECOVERY_MARK} {chosen.label} ({target.kind})\n")
        conf.write("\n".join(lines) + "\n")
    if owner is not None:
        chown_tree(to, owner)
        for where in spaces.values():
            chown_tree(where, owner)
    return chosen


def tablespace_dirs(
    manifest: Manifest, remap: Mapping[str, Path], under: Path | None = None
) -> dict[str, Path]:
    """`pg_tblspc/<oid>` -> the directory a restore puts that tablespace in: `remap`'s,
    else `under/tablespace-<oid>`, else where it was; TargetError for an OID the backup
    has not, or a directory in use."""
    unknown = sorted(set(remap) - set(manifest.tablespaces))
    if unknown:
        have = ", ".join(f"{o} ({p})" for o, p in sorted(manifest.tablespaces.items()))
        raise TargetError(
            f"backup {manifest.label} has no tablespace {', '.join(unknown)} "
            f"(its tablespaces: {have or 'none'})"
        )
    out: dict[str, Path] = {}
    for oid, was in sorted(manifest.tablespaces.items()):
        default = Path(was) if under is None else under / f"tablespace-{oid}"
        where = Path(remap.get(oid, default)).absolute()
        if where.exists() and (not where.is_dir() or any(where.iterdir())):
            raise TargetError(
                f"tablespace {oid}'s directory {where} exists and is not empty: restore it "
                f"elsewhere with --tablespace-map {oid}=NEW_DIR"
            )
        if where in out.values():
            raise TargetError(f"two tablespaces would share {where}: map them apart")
        out[f"pg_tblspc/{oid}"] = where
    return out


def chown_tree(root: Path, owner: pwd.struct_passwd) -> None:
    os.chown(root, owner.pw_uid, owner.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, n), owner.pw_uid, owner.pw_gid)
