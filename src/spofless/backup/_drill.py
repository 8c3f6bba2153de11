"""Restore drills: restore the latest point into a scratch instance and measure RTO and RPO.

Phases, each timed: fetch the files, fetch the WAL (prefetch), replay (start
to promoted), first query. RTO is their sum: how long a restore from the
archive takes now, with this data. RPO is what a loss of every server at the
drill's start would have cost: the commits the primary had written then and the
restored instance did not replay. The drill reads the primary's WAL between the
restored point and the primary's position at the drill's start
(spofless.backup._walscan): no commit there is RPO 0 (an idle database with
everything archived loses nothing, however old its last commit); else the newest
lost commit's time minus the last replayed commit's. When that WAL cannot be read
(recycled, another timeline), the primary's last commit (with
`track_commit_timestamp`, else its clock) stands in, which overstates. A drill
never touches the running servers beyond read queries, and its scratch instance is
removed whatever happens. A drill that fails
(no backup, a damaged object, a replay that stops, no answer) raises
RestoreDrillError naming the phase: a failed drill is a finding, recorded like a
good one (spofless.backup._drill_record).
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spofless.backup._basebackup import conninfo
from spofless.backup._config import BackupConfig, Source
from spofless.backup._errors import BackupError, RestoreDrillError, TargetError
from spofless.backup._restore import SPOOL, restore
from spofless.backup._scratch import ScratchInstance
from spofless.backup._store import Store
from spofless.backup._walscan import PAGE, commits
from spofless.backup.plan import Target, format_lsn, parse_lsn

# The most WAL a drill reads from the primary to see what the restore missed: more
# than that and the RPO is measured by the clocks instead.
MAX_WAL_READ = 64 * 1024 * 1024


@dataclass
class DrillResult:
    label: str
    files: float  # seconds, per phase
    wal: float
    replay: float
    first_query: float
    bytes: int
    segments: int
    replayed: float | None  # the last replayed commit (epoch), None: none replayed
    reference: float  # the primary's last commit or clock at the drill's start
    reference_is_commit: bool

    started_at: float = 0.0  # epoch
    ended_at: float = 0.0
    # None: the WAL after the restored point was not read (the RPO is by the clocks);
    # else how many commits it held (0: nothing was lost, RPO 0).
    lost_commits: int | None = None

    @property
    def rto(self) -> float:
        return self.files + self.wal + self.replay + self.first_query

    @property
    def rpo(self) -> float | None:
        if self.lost_commits == 0:
            return 0.0
        return None if self.replayed is None else max(0.0, self.reference - self.replayed)

    def to_json(self, component: str, repository: str) -> dict[str, Any]:
        return {
            "kind": "restore",
            "ok": True,
            "component": component,
            "repository": repository,
            "backup": self.label,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "phases": {
                "restore_files": self.files,
                "fetch_wal": self.wal,
                "replay": self.replay,
                "first_query": self.first_query,
            },
            "rto": self.rto,
            "rpo": self.rpo,
            "bytes": self.bytes,
            "segments": self.segments,
            "last_replayed_commit": self.replayed,
            "reference": self.reference,
            "reference_is_commit": self.reference_is_commit,
            "lost_commits": self.lost_commits,
        }

    def lines(self) -> list[str]:
        def at(t: float) -> str:
            return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]

        ref = "the primary's last commit" if self.reference_is_commit else "the primary's clock"
        if self.lost_commits == 0:
            rpo = "0.000 s (no commit in the primary's WAL after the restored point)"
        elif self.replayed is not None and self.rpo is not None:
            n = self.lost_commits
            lost = "" if n is None else f"{n} commit{'' if n == 1 else 's'} lost, "
            rpo = (
                f"{self.rpo:.3f} s ({lost}last replayed commit {at(self.replayed)} UTC, "
                f"{ref} {at(self.reference)} UTC)"
            )
        else:
            rpo = "unknown: no transaction was replayed after the backup"
        return [
            f"restore drill of backup {self.label} to the latest archived point",
            f"  fetch files  {self.files:8.2f} s  ({self.bytes / 1e6:.1f} MB)",
            f"  fetch WAL    {self.wal:8.2f} s  ({self.segments} segments)",
            f"  replay       {self.replay:8.2f} s",
            f"  first query  {self.first_query:8.2f} s",
            f"  RTO          {self.rto:8.2f} s",
            f"  RPO          {rpo}",
        ]


@dataclass(frozen=True)
class _Reference:
    src: Source | None  # the primary asked, None: none answered
    at: float  # its last commit (with track_commit_timestamp), else its clock, else ours
    is_commit: bool
    lsn: int | None  # where its written WAL ended


def _primary_reference(config: BackupConfig) -> _Reference:
    """What the primary had at the drill's start: its written WAL position, and its last
    commit time if it tracks them, else its clock."""
    import psycopg

    for src in config.sources:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(conninfo(src, 5), autocommit=True) as conn,
        ):
            row = conn.execute(
                "SELECT pg_is_in_recovery(), extract(epoch from now()), "
                "pg_current_wal_lsn()::text WHERE NOT pg_is_in_recovery()"
            ).fetchone()
            if row is None:
                continue
            lsn = parse_lsn(row[2])
            with contextlib.suppress(psycopg.Error):
                last = conn.execute(
                    "SELECT extract(epoch from (pg_last_committed_xact()).timestamp)"
                ).fetchone()
                if last and last[0] is not None:
                    return _Reference(src, float(last[0]), True, lsn)
            return _Reference(src, float(row[1]), False, lsn)
    return _Reference(None, time.time(), False, None)


def _lost_commits(src: Source, start: int, end: int) -> list[float] | None:
    """Commit times in the primary's WAL from `start` (the restored point) to `end`, read
    with pg_read_binary_file; None when it cannot be read (see _walscan)."""
    import psycopg

    if start >= end:
        return []  # the restore replayed all the primary had written
    if end - start > MAX_WAL_READ:
        return None
    base = start - start % PAGE
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(conninfo(src, 5), autocommit=True) as conn,
    ):
        seg_size = conn.execute(
            "SELECT setting::int FROM pg_settings WHERE name = 'wal_segment_size'"
        ).fetchone()
        if seg_size is None:
            return None
        seg = int(seg_size[0])
        wal = bytearray()
        at = base
        while at < end:
            upto = min(end, (at // seg + 1) * seg)
            # pg_walfile_name names the segment before a boundary: ask for the byte after.
            row = conn.execute(
                "SELECT pg_read_binary_file('pg_wal/' || pg_walfile_name(%s::pg_lsn + 1), "
                "%s, %s, true)",
                (format_lsn(at), at % seg, upto - at),
            ).fetchone()
            if row is None or row[0] is None or len(row[0]) < upto - at:
                return None
            wal += row[0]
            at = upto
        return commits(bytes(wal), base, start, end, seg)
    return None


def run_drill(
    config: BackupConfig,
    store: Store,
    restore_command_for: Callable[[Path], str] | None = None,
    *,
    timeout: float = 600.0,
) -> DrillResult:
    """Restore the latest point into a scratch instance, time every phase, measure RPO.

    Raises RestoreDrillError naming the phase that failed (`restore`: fetching the
    files or the WAL, e.g. no backup, a damaged object, the repository)."""
    started_at = time.time()
    phase = "restore"
    try:
        ref = _primary_reference(config)
        manifests = store.manifests()
        if not manifests:
            raise TargetError(f"{store.name}: no backup of {config.component} to restore")
        phases: dict[str, float] = {}
        with ScratchInstance(manifests[-1].pg_version, config.os_user, timeout) as scratch:
            m = restore(
                store,
                Target("latest"),
                scratch.data,
                restore_command=(
                    restore_command_for(scratch.data / SPOOL) if restore_command_for else None
                ),
                parallel=config.spec.parallel,
                owner=scratch.owner,
                archive=False,
                tablespaces_under=scratch.dir,
                phases=phases,
            )
            phase = "replay"
            t = time.monotonic()
            scratch.start()
            scratch.wait_promoted()
            replay = time.monotonic() - t
            phase = "first_query"
            t = time.monotonic()
            if scratch.query("SELECT count(*) FROM pg_class") is None:
                raise BackupError(f"the restored instance does not answer: {scratch.log_tail()}")
            first_query = time.monotonic() - t
            last = scratch.query("SELECT extract(epoch from pg_last_xact_replay_timestamp())")
            replayed_to = scratch.query("SELECT pg_last_wal_replay_lsn()")
        lost = None
        if ref.src is not None and ref.lsn is not None and replayed_to:
            lost = _lost_commits(ref.src, parse_lsn(replayed_to), ref.lsn)
    except Exception as exc:  # every failure is the drill's finding, named by its phase
        raise RestoreDrillError(phase, str(exc) or type(exc).__name__, started_at) from exc
    return DrillResult(
        label=m.label,
        files=phases["files"],
        wal=phases["wal"],
        replay=replay,
        first_query=first_query,
        bytes=m.total_bytes,
        segments=int(phases["segments"]),
        replayed=float(last) if last else None,
        # The newest lost commit, read from the WAL, is the reference when there is one.
        reference=max(lost) if lost else ref.at,
        reference_is_commit=bool(lost) or ref.is_commit,
        lost_commits=None if lost is None else len(lost),
        started_at=started_at,
        ended_at=time.time(),
    )
