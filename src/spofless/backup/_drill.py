"""Restore drills: restore the latest point into a scratch instance and measure RTO and RPO.

Phases, each timed: fetch the files, fetch the WAL (prefetch), replay (start
to promoted), first query. RTO is their sum: how long a restore from the
archive takes now, with this data. RPO is what a loss of every server at the
drill's start would have cost: the primary's last commit then (with
`track_commit_timestamp`, else its clock) minus the last commit the restored
instance replayed. A drill never touches the running servers beyond one read
query, and its scratch instance is removed whatever happens. A drill that fails
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
from spofless.backup._config import BackupConfig
from spofless.backup._errors import BackupError, RestoreDrillError, TargetError
from spofless.backup._restore import SPOOL, restore
from spofless.backup._scratch import ScratchInstance
from spofless.backup._store import Store
from spofless.backup.plan import Target


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

    @property
    def rto(self) -> float:
        return self.files + self.wal + self.replay + self.first_query

    @property
    def rpo(self) -> float | None:
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
        }

    def lines(self) -> list[str]:
        def at(t: float) -> str:
            return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]

        ref = "the primary's last commit" if self.reference_is_commit else "the primary's clock"
        rpo = (
            f"{self.rpo:.3f} s (last replayed commit {at(self.replayed)} UTC, {ref} "
            f"{at(self.reference)} UTC)"
            if self.replayed is not None and self.rpo is not None
            else "unknown: no transaction was replayed after the backup"
        )
        return [
            f"restore drill of backup {self.label} to the latest archived point",
            f"  fetch files  {self.files:8.2f} s  ({self.bytes / 1e6:.1f} MB)",
            f"  fetch WAL    {self.wal:8.2f} s  ({self.segments} segments)",
            f"  replay       {self.replay:8.2f} s",
            f"  first query  {self.first_query:8.2f} s",
            f"  RTO          {self.rto:8.2f} s",
            f"  RPO          {rpo}",
        ]


def _primary_reference(config: BackupConfig) -> tuple[float, bool]:
    """The primary's last commit time if it tracks them, else its clock, else ours."""
    import psycopg

    for src in config.sources:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(conninfo(src, 5), autocommit=True) as conn,
        ):
            row = conn.execute("SELECT pg_is_in_recovery(), extract(epoch from now())").fetchone()
            if row is None or row[0]:
                continue
            with contextlib.suppress(psycopg.Error):
                last = conn.execute(
                    "SELECT extract(epoch from (pg_last_committed_xact()).timestamp)"
                ).fetchone()
                if last and last[0] is not None:
                    return float(last[0]), True
            return float(row[1]), False
    return time.time(), False


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
        reference, is_commit = _primary_reference(config)
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
        reference=reference,
        reference_is_commit=is_commit,
        started_at=started_at,
        ended_at=time.time(),
    )
