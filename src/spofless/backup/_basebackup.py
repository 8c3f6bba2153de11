"""Taking a base backup from a running PostgreSQL with the low-level API.

One session holds `pg_backup_start` ... `pg_backup_stop` (non-exclusive, so it
works on a replica too) while worker threads copy the data directory's files
in parallel, in parts of CHUNK bytes (so one large file is copied by every
thread), each part read once and checksummed; for an incremental, a part
whose checksum matches the previous backup's is not uploaded: the manifest
names the backup that holds it (a changed 1 GB file uploads its changed parts).
Files that change during the copy are fine: replay from the backup's start
LSN repairs them, which is why the backup only counts once every WAL segment
from start to stop is archived (waited for, bounded). Then the manifest is written, last.

Tablespaces are copied through their `pg_tblspc/<oid>` links, their files listed
under those paths, with where each link pointed in the manifest.

Refused, with nothing written: a source that is not on this machine (the files
are read locally), a missing archive of the backup's WAL after `wal_timeout`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spofless.backup._config import BackupConfig, Source
from spofless.backup._errors import BackupError, SourceError
from spofless.backup._manifest import FileEntry, Manifest, Part
from spofless.backup._store import Store
from spofless.backup.plan import needed_segments, parse_lsn, timeline_path

if TYPE_CHECKING:
    import psycopg

# psycopg is imported where a connection is made, not here: a restore never connects,
# and importing it costs a restore about 0.2 s of start-up.

logger = logging.getLogger(__name__)

# Directories whose contents a backup leaves out (PostgreSQL's docs, "Making a
# Base Backup Using the Low Level API"); the directories themselves are kept.
SKIP_CONTENTS = frozenset(
    {
        "pg_wal",
        "pg_replslot",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_stat_tmp",
        "pg_subtrans",
    }
)
SKIP_FILES = frozenset(
    {
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "tablespace_map.old",
        "recovery.signal",
        "standby.signal",
    }
)
CONNECT_TIMEOUT = 5  # seconds, per instance tried
# Files are stored in parts of this size, so memory per copying thread stays bounded
# whatever the file size (relation files grow to 1 GB).
CHUNK = 64 * 1024 * 1024
# A part is read, hashed and compressed READ bytes at a time, into one buffer per thread
# that stays in the CPU's cache (a 64 MiB buffer per part cost page faults and cache misses).
READ = 1024 * 1024


@dataclass
class Progress:
    """Files and bytes done of a copy; `line()` is what the commands print."""

    what: str
    files_total: int
    bytes_total: int
    files_done: int = 0
    bytes_done: int = 0
    started: float = 0.0

    def add(self, size: int) -> None:
        self.files_done += 1
        self.bytes_done += size

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.bytes_done / elapsed if elapsed > 0 else 0.0
        left = (self.bytes_total - self.bytes_done) / rate if rate > 0 else 0.0
        return (
            f"{self.what}: {self.files_done}/{self.files_total} files, "
            f"{self.bytes_done / 1e6:.1f}/{self.bytes_total / 1e6:.1f} MB, "
            f"{rate / 1e6:.1f} MB/s, ETA {left:.0f}s"
        )


ProgressFn = Callable[[Progress], None]


def scan(data_dir: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """(directories with modes, files) of a data directory, minus what a backup skips.
    Tablespaces are walked through their links in pg_tblspc (no other link is followed)."""
    dirs: list[tuple[str, int]] = []
    files: list[str] = []
    for dirpath, dirnames, filenames in _walk(data_dir):
        rel = Path(dirpath).relative_to(data_dir).as_posix()
        dirnames.sort()
        if rel != ".":
            dirs.append((rel, stat.S_IMODE(os.stat(dirpath).st_mode)))
            if rel in SKIP_CONTENTS:
                dirnames.clear()
                continue
        dirnames[:] = [d for d in dirnames if not d.startswith("pgsql_tmp")]
        for f in sorted(filenames):
            path = f if rel == "." else f"{rel}/{f}"
            if rel == "." and f in SKIP_FILES:
                continue
            if f.startswith("pgsql_tmp") or f == "pg_internal.init":
                continue
            files.append(path)
    return dirs, files


def _walk(data_dir: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk of the data directory, and of each tablespace through its pg_tblspc link."""
    yield from os.walk(data_dir)
    tblspc = data_dir / "pg_tblspc"
    if tblspc.is_dir():
        for link in sorted(tblspc.iterdir()):
            if link.is_symlink() and link.is_dir():
                yield from os.walk(link)


def tablespace_links(data_dir: Path) -> dict[str, str]:
    """Tablespace OID -> the directory its pg_tblspc link points to."""
    tblspc = data_dir / "pg_tblspc"
    if not tblspc.is_dir():
        return {}
    return {
        link.name: os.path.realpath(link)
        for link in sorted(tblspc.iterdir())
        if link.is_symlink() and link.is_dir()
    }


def conninfo(src: Source, timeout: int) -> str:
    """The superuser's connection string for `src` (with the topology's secrets)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=src.host,
        port=src.port,
        user="postgres",
        dbname="postgres",
        connect_timeout=timeout,
        application_name="spofless-backup",
        **dict(src.params),
    )


def _connect(src: Source) -> psycopg.Connection[Any]:
    import psycopg

    try:
        return psycopg.connect(conninfo(src, CONNECT_TIMEOUT), autocommit=True)
    except psycopg.Error as exc:
        raise SourceError(f"{src.name} ({src.host}:{src.port}): {exc}".strip()) from None


def pick_source(
    sources: Sequence[Source], prefer: Literal["replica", "primary"]
) -> tuple[Source, Source | None]:
    """(the instance to copy from, the primary if one answered)."""
    roles: list[tuple[Source, bool]] = []
    errors: list[str] = []
    for src in sources:
        try:
            with _connect(src) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                roles.append((src, bool(row and row[0])))
        except SourceError as exc:
            errors.append(str(exc))
    if not roles:
        raise SourceError("no instance answered: " + "; ".join(errors))
    primary = next((s for s, rec in roles if not rec), None)
    replicas = [s for s, rec in roles if rec]
    if prefer == "replica" and replicas:
        return replicas[0], primary
    return (primary or replicas[0]), primary


def new_label(kind: str, existing: Sequence[str], now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    label = f"{stamp}{'F' if kind == 'full' else 'I'}"
    n = 1
    while label in existing:
        n += 1
        label = f"{stamp}{'F' if kind == 'full' else 'I'}{n}"
    return label


def take_backup(
    config: BackupConfig,
    kind: Literal["full", "incremental"],
    *,
    progress: ProgressFn | None = None,
    wal_timeout: float = 120.0,
) -> Manifest:
    """Take one base backup into every store of `config`; returns its manifest."""
    src, primary = pick_source(config.sources, config.spec.from_)
    conn = _connect(src)
    try:
        return _backup(conn, config, src, primary, kind, progress, wal_timeout)
    finally:
        conn.close()


def _parent(stores: Sequence[Store], sysid: str) -> Manifest | None:
    """The newest backup of this cluster that every store holds (an incremental's base)."""
    common = set(stores[0].labels())
    for s in stores[1:]:
        common &= set(s.labels())
    for label in sorted(common, reverse=True):
        m = stores[0].manifest(label)
        if m.system_identifier == sysid:
            return m
    return None


def _backup(
    conn: psycopg.Connection[Any],
    config: BackupConfig,
    src: Source,
    primary: Source | None,
    kind: Literal["full", "incremental"],
    progress: ProgressFn | None,
    wal_timeout: float,
) -> Manifest:
    import psycopg

    stores = config.stores

    def one(sql: str) -> Any:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]

    data_dir = Path(one("SHOW data_directory"))
    if not data_dir.is_dir():
        raise SourceError(
            f"{src.name}'s data directory {data_dir} is not on this machine: "
            "run the backup on the host of the instance it copies from"
        )
    sysid = str(one("SELECT system_identifier FROM pg_control_system()"))
    version = str(one("SHOW server_version_num"))
    seg_size = int(one("SELECT setting::int FROM pg_settings WHERE name = 'wal_segment_size'"))
    parent = _parent(stores, sysid) if kind == "incremental" else None
    if kind == "incremental" and parent is None:
        logger.info("no earlier backup of this cluster in every repository: taking a full one")
        kind = "full"
    label = new_label(kind, stores[0].labels())
    previous = {f.path: f for f in parent.files} if parent else {}

    start_time = time.time()
    conn.execute("SELECT pg_backup_start(%s, true)", (label,))
    logger.info("backup %s of %s started (%s)", label, src.name, kind)
    try:
        dirs, files = scan(data_dir)
        tablespaces = tablespace_links(data_dir)
        stats: dict[str, os.stat_result] = {}
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                stats[f] = (data_dir / f).stat()
        # One unit of work per part, so a 1 GB relation file is copied by every thread.
        units = [
            (rel, i, i == n - 1)
            for rel, st in stats.items()
            for n in [max(1, -(-st.st_size // CHUNK))]
            for i in range(n)
        ]
        prog = Progress(
            f"backup {label}",
            len(units),
            sum(st.st_size for st in stats.values()),
            started=time.monotonic(),
        )

        local = threading.local()

        def copy(unit: tuple[str, int, bool]) -> tuple[str, int, Part | None]:
            rel, i, last = unit
            if not hasattr(local, "enc"):  # per thread: a zstd context and a read buffer
                local.enc, local.buf = stores[0].codec.encoder(), bytearray(READ)
            old = previous.get(rel)
            was = old.parts[i] if old is not None and i < len(old.parts) else None
            key = stores[0].part_key(label, rel, i)
            try:
                with open(data_dir / rel, "rb", buffering=0) as f:
                    if was is not None:
                        # An incremental hashes first and uploads only a changed part
                        # (which it reads again: the file may change in between).
                        digest, size = _hash_part(f, i, last, local.buf)
                        if digest == was.sha256 and size == was.size:
                            return rel, i, was  # unchanged: the earlier backup holds it
                    enc = local.enc
                    enc.begin()
                    _read_part(f, i, last, local.buf, enc.update)
                    blob, digest = enc.finish(key)
                    size = enc.size
            except FileNotFoundError:
                return rel, i, None  # dropped during the backup: replay drops it too
            for s in stores:
                s.repo.put(key, blob, sync_dir=False)
            return rel, i, Part(size=size, sha256=digest, ref=label)

        parts: dict[str, dict[int, Part | None]] = {}
        with concurrent.futures.ThreadPoolExecutor(config.spec.parallel) as pool:
            for rel, i, part in pool.map(copy, units):
                parts.setdefault(rel, {})[i] = part
                prog.add(part.size if part else 0)
                if progress:
                    progress(prog)
        entries = [
            FileEntry(
                path=rel,
                size=sum(p.size for p in got.values() if p),
                mode=stat.S_IMODE(stats[rel].st_mode),
                mtime=stats[rel].st_mtime,
                parts=[p for i in range(len(got)) if (p := got[i]) is not None],
            )
            for rel, got in parts.items()
            if all(got.values())
        ]
    except BaseException:
        conn.execute("SELECT pg_backup_stop(false)")
        raise
    # pg_backup_stop waits for the stop segment's archiving: bounded, like every wait.
    conn.execute(f"SET statement_timeout = {int(wal_timeout * 1000)}")
    try:
        row = conn.execute("SELECT lsn::text, labelfile FROM pg_backup_stop(true)").fetchone()
    except psycopg.errors.QueryCanceled:
        raise BackupError(
            f"{src.name}: the backup's last WAL segment was not archived within {wal_timeout:g}s "
            "(is archive_command set to `spofless backup archive-wal`, and working?); "
            "no manifest written"
        ) from None
    assert row is not None
    stop_lsn, labelfile = parse_lsn(row[0]), str(row[1])
    stop_time = time.time()
    start_lsn, timeline = _parse_label(labelfile)
    if primary is not None and primary != src:
        # A replica's stop point is archived once the primary finishes that segment.
        with _connect(primary) as pconn:
            pconn.execute("SELECT pg_switch_wal()")
    _wait_archived(stores, start_lsn, stop_lsn, timeline, seg_size, wal_timeout)
    manifest = Manifest(
        label=label,
        kind=kind,
        parent=parent.label if parent else None,
        component=config.component,
        source=src.name,
        pg_version=version,
        system_identifier=sysid,
        timeline=timeline,
        start_lsn=start_lsn,
        stop_lsn=stop_lsn,
        start_time=start_time,
        stop_time=stop_time,
        wal_segment_size=seg_size,
        backup_label=labelfile,
        directories=dirs,
        files=sorted(entries, key=lambda e: e.path),
        tablespaces=tablespaces,
    )
    for s in stores:
        # The parts' directory entries are made durable once per directory, before the
        # manifest that makes the backup exist (an fsync per object doubled their cost).
        s.repo.sync_dirs()
        s.write_manifest(manifest)
    logger.info(
        "backup %s done: %d files, %.1f MB, %.1f MB new",
        label,
        len(entries),
        manifest.total_bytes / 1e6,
        manifest.new_bytes / 1e6,
    )
    return manifest


def _read_part(
    f: Any, i: int, last: bool, buf: bytearray, feed: Callable[[memoryview], object]
) -> int:
    """Feed part `i` of open file `f` to `feed` READ bytes at a time (a view of `buf`, reused);
    the last part takes whatever the file grew by meanwhile. Returns the bytes read."""
    f.seek(i * CHUNK)
    view = memoryview(buf)
    left, size = None if last else CHUNK, 0
    while left is None or left > 0:
        n = f.readinto(view if left is None or left >= len(buf) else view[:left])
        if not n:
            break
        feed(view[:n])
        size += n
        if left is not None:
            left -= n
    return size


def _hash_part(f: Any, i: int, last: bool, buf: bytearray) -> tuple[str, int]:
    """(sha256 in hex, size) of part `i` of open file `f`."""
    h = hashlib.sha256()
    size = _read_part(f, i, last, buf, h.update)
    return h.hexdigest(), size


_START = re.compile(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", re.M)
_TLI = re.compile(r"^START TIMELINE: (\d+)", re.M)


def _parse_label(labelfile: str) -> tuple[int, int]:
    m, t = _START.search(labelfile), _TLI.search(labelfile)
    if not m or not t:
        raise SourceError(f"unexpected backup_label from pg_backup_stop: {labelfile!r}")
    return parse_lsn(m.group(1)), int(t.group(1))


def _wait_archived(
    stores: Sequence[Store], start: int, stop: int, tli: int, seg_size: int, bound: float
) -> None:
    deadline = time.monotonic() + bound
    for s in stores:
        while True:
            hist = s.histories() if tli > 1 else {}
            want = {
                seg.name(seg_size)
                for seg in needed_segments(start, stop, timeline_path(tli, hist), seg_size)
            }
            missing = sorted(want - set(s.wal_names()))
            if not missing:
                break
            if time.monotonic() > deadline:
                raise BackupError(
                    f"{s.name}: WAL {', '.join(missing)} not archived within {bound:g}s: the "
                    "backup is not usable without it (is archive_command set to "
                    "`spofless backup archive-wal`?); no manifest written"
                )
            time.sleep(0.2)
