"""`spofless backup run`: backups and restore drills on the topology's schedule, expiry.

Observe (the manifests of the first repository, the newest drill record) ->
`schedule.due(...)`, `schedule.drill_due(...)` -> act (take the backup, expire;
run the drill), one sentence logged per action. A failed backup is logged and
retried `retry_after` later (or at the schedule's next firing, when sooner), not
at once in a loop. Runs
until SIGTERM or SIGINT; a backup in progress then finishes first (the
low-level API session must end with pg_backup_stop), a drill in progress stops
at once (its scratch instance stopped and removed, nothing recorded).

Checks happen every `check_every` (30 s) and when a schedule fires, to the
second for a schedule with a seconds field.

Restore drills (`schedule.drill`): once a backup exists, when the drill's cron
fired since the newest drill started (good or failed; never: at once), the
scheduler that would take a backup restores the latest point from the first
repository into a scratch instance (spofless.backup._drill). Every drill is
recorded in the state directory, good or failed (_drill_record); a failed one
is logged as an error, shown by `spofless status`, served by the agents as
`spofless_backup_restore_drill_failed 1`, and the monitor records an event. A
failed drill is not retried before the next firing.

The stack runs one scheduler beside each postgres instance (`--instance i`):
a backup copies its files locally, so only the scheduler beside the instance
the backup would copy from (`from: replica`: the first replica that answers,
the same choice for every scheduler) takes it; the others only watch. After
every check a scheduler writes what it saw to its status file (JSON): the
newest backup, the newest full one, the last error; `status_line` turns that
into what `spofless status` shows, the backups' age and whether they are stale
recomputed at the time it is shown.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from spofless.backup._basebackup import pick_source, take_backup
from spofless.backup._config import BackupConfig
from spofless.backup._drill import run_drill
from spofless.backup._drill_record import failed_record, write_record
from spofless.backup._errors import BackupError, RestoreDrillError
from spofless.backup._expire import expire
from spofless.backup.plan import BackupInfo
from spofless.backup.schedule import drill_due, due, next_firing, staleness
from spofless.pg.drill_records import drill_summary, latest_drill
from spofless.topology._backup import BackupSchedule
from spofless.topology._cron import Cron

logger = logging.getLogger(__name__)


def status_path(state_dir: Path, component: str, index: int) -> Path:
    """Where the scheduler beside instance `index` of `component` writes its status."""
    return state_dir / "backup" / f"{component}-{index}.json"


def _write_status(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def status_line(doc: dict[str, Any] | None, schedule: BackupSchedule, now: float) -> str:
    """One line for `spofless status`: the newest backup and its age, stale or not, the
    last error. Pure."""
    if doc is None:
        return "no backup status yet"
    infos = [BackupInfo(**b) for b in (doc.get("newest"), doc.get("newest_full")) if b]
    newest = max(infos, key=lambda b: b.stop_time, default=None)
    parts = []
    if newest is None:
        parts.append("no backup yet")
    else:
        when = datetime.datetime.fromtimestamp(newest.stop_time, datetime.UTC)
        parts.append(
            f"last backup {newest.label} ({newest.kind}) ended {when:%Y-%m-%d %H:%M} UTC, "
            f"{_age(now - newest.stop_time)} ago"
        )
    try:
        stale = staleness(schedule, infos, now)
    except ValueError as exc:
        stale = f"backup.schedule: {exc}"
    if stale:
        parts.append(stale.upper()[:5] + stale[5:])  # "STALE: ..."
    if doc.get("error"):
        parts.append(f"last attempt failed: {doc['error']}")
    drill = doc.get("drill")
    if isinstance(drill, dict) and drill.get("at") is not None:
        ago = _age(now - float(drill["at"]))
        if drill.get("ok"):
            rpo = drill.get("rpo")
            parts.append(
                f"last restore drill {ago} ago: RTO {float(drill.get('rto') or 0):.1f}s, RPO "
                + ("unknown" if rpo is None else f"{float(rpo):.1f}s")
            )
        else:
            parts.append(
                f"RESTORE DRILL FAILED {ago} ago ({drill.get('failed_phase')}): "
                f"{drill.get('error')}"
            )
    return "; ".join(parts)


class _Interrupted(BaseException):
    """SIGTERM or SIGINT during a restore drill: it stops at once (its scratch instance
    removed), unlike a backup, which finishes (PostgreSQL's backup session must end)."""


def run_schedule(
    config: BackupConfig,
    *,
    instance: int | None = None,
    status_file: Path | None = None,
    state_dir: Path | None = None,
    on_drill: Callable[[dict[str, Any]], None] | None = None,
    check_every: float = 30.0,
    retry_after: float = 300.0,
) -> None:
    """Check whether a backup or a restore drill is due, at the latest every `check_every`
    s and whenever a schedule fires; take it and expire, or drill.

    `instance`: act only when the backup would copy from that instance (the stack runs
    one scheduler beside each); None: from whichever `from:` picks. Drills need
    `state_dir` (their records, and when the last one ran); `on_drill` gets each
    drill's record (the CLI appends it to the drill history)."""
    stop = threading.Event()
    drilling = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if drilling.is_set():
            drilling.clear()
            raise _Interrupted

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    sched = config.spec.schedule
    if sched.full is None and sched.incremental is None and sched.drill is None:
        raise BackupError(
            f"{config.component}: backup.schedule has neither full, incremental nor drill"
        )
    # A failed backup is tried again `retry_after` later, or at the schedule's next firing
    # when that comes sooner (a schedule every 15 s does not wait 5 minutes).
    retry_after = min(retry_after, _shortest_period(sched) or retry_after)
    failed_at = -retry_after
    error: str | None = None
    told: dict[str, str] = {}
    while not stop.is_set():
        now = time.time()
        infos: list[BackupInfo] = []
        try:
            infos = [m.info() for m in config.stores[0].manifests()]
            kind = due(sched, infos, now)
            if (
                kind is not None
                and time.monotonic() - failed_at >= retry_after
                and (instance is None or _copies_from(config, instance, told))
            ):
                m = take_backup(config, kind)
                logger.info("%s: took %s backup %s", config.component, m.kind, m.label)
                infos.append(m.info())
                error = None
                for store in config.stores:
                    plan = expire(store, config.spec.retention)
                    logger.info("%s: %s: %s", config.component, store.name, plan.describe())
        except BackupError as exc:
            failed_at = time.monotonic()
            error = str(exc)
            logger.error(
                "%s: scheduled backup failed, retrying in %gs: %s",
                config.component,
                retry_after,
                exc,
            )
        if state_dir is not None and sched.drill is not None and infos and not stop.is_set():
            last = latest_drill(state_dir, config.component, ok_only=False)
            if drill_due(sched, last["started_at"] if last else None, time.time()):
                try:
                    mine = instance is None or _copies_from(config, instance, told)
                except BackupError as exc:
                    mine = False
                    logger.warning("%s: restore drill due, no source: %s", config.component, exc)
                if mine:
                    drilling.set()
                    try:
                        record = _drill(config, state_dir)
                    except _Interrupted:
                        logger.info("%s: restore drill interrupted (stopping)", config.component)
                        break
                    finally:
                        drilling.clear()
                    if on_drill is not None:
                        on_drill(record)
        if status_file is not None:
            doc = _status_doc(config, instance, infos, error, now)
            if state_dir is not None:
                doc["drill"] = drill_summary(state_dir, config.component)
            _write_status(status_file, doc)
        stop.wait(_until_next_check(sched, check_every))


def _shortest_period(sched: BackupSchedule) -> float | None:
    """Seconds between the next two firings of the backup schedule that fires most often."""
    now = datetime.datetime.now(datetime.UTC)
    periods = []
    for text in (sched.full, sched.incremental):
        if text:
            cron = Cron.parse(text)
            first = cron.next(now)
            periods.append((cron.next(first) - first).total_seconds())
    return min(periods, default=None)


def _until_next_check(sched: BackupSchedule, check_every: float) -> float:
    """Seconds to the next check: `check_every`, or sooner when a schedule fires sooner
    (a schedule with seconds fires between checks)."""
    now = time.time()
    fires = next_firing(sched, now)
    return check_every if fires is None else max(0.05, min(check_every, fires - now))


def _drill(config: BackupConfig, state_dir: Path) -> dict[str, Any]:
    """Run a restore drill from the first repository and record it, good or failed;
    returns the record. A failed drill is logged as an error: it is a finding."""
    store = config.stores[0]
    logger.info("%s: restore drill of the latest point from %s", config.component, store.name)
    try:
        result = run_drill(config, store)
    except RestoreDrillError as exc:
        doc = failed_record(config.component, store.name, exc, time.time())
        write_record(state_dir, doc)
        logger.error("%s: RESTORE DRILL FAILED: %s", config.component, exc)
        return doc
    doc = result.to_json(config.component, store.name)
    write_record(state_dir, doc)
    rpo = "unknown" if result.rpo is None else f"{result.rpo:.3f}s"
    logger.info(
        "%s: restore drill of backup %s: RTO %.2fs (files %.2fs, WAL %.2fs, replay %.2fs, "
        "first query %.2fs), RPO %s",
        config.component,
        result.label,
        result.rto,
        result.files,
        result.wal,
        result.replay,
        result.first_query,
        rpo,
    )
    return doc


def _copies_from(config: BackupConfig, instance: int, told: dict[str, str]) -> bool:
    """Whether a backup taken now would copy from instance `instance`. `told`: the
    source last said to take it (said once, not at every check while it runs)."""
    src, _ = pick_source(config.sources, config.spec.from_)
    if src == config.sources[instance]:
        return True
    if told.get("source") != src.name:
        told["source"] = src.name
        logger.info(
            "%s: a backup is due; the scheduler beside %s takes it (from: %s)",
            config.component,
            src.name,
            config.spec.from_,
        )
    return False


def _status_doc(
    config: BackupConfig,
    instance: int | None,
    infos: list[BackupInfo],
    error: str | None,
    now: float,
) -> dict[str, Any]:
    newest = max(infos, key=lambda b: b.stop_time, default=None)
    full = max((b for b in infos if b.kind == "full"), key=lambda b: b.stop_time, default=None)
    return {
        "component": config.component,
        "instance": instance,
        "checked_at": now,
        "backups": len(infos),
        "newest": dataclasses.asdict(newest) if newest else None,
        "newest_full": dataclasses.asdict(full) if full else None,
        "error": error,
    }
