"""`spofless backup run`: take backups on the topology's schedule, then apply retention.

Observe (the manifests of the first repository) -> `schedule.due(...)` -> act
(take the backup, expire), one sentence logged per action. A failed backup is
logged and retried at the next check, `retry_after` later, not at once in a
loop. Runs until SIGTERM or SIGINT; a backup in progress then finishes first
(the low-level API session must end with pg_backup_stop).

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
from pathlib import Path
from types import FrameType
from typing import Any

from spofless.backup._basebackup import pick_source, take_backup
from spofless.backup._config import BackupConfig
from spofless.backup._errors import BackupError
from spofless.backup._expire import expire
from spofless.backup.plan import BackupInfo
from spofless.backup.schedule import due, staleness
from spofless.topology._backup import BackupSchedule

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
    return "; ".join(parts)


def run_schedule(
    config: BackupConfig,
    *,
    instance: int | None = None,
    status_file: Path | None = None,
    check_every: float = 30.0,
    retry_after: float = 300.0,
) -> None:
    """Check every `check_every` s whether a backup is due; take it and expire.

    `instance`: take it only when the backup would copy from that instance (the stack
    runs one scheduler beside each); None: from whichever `from:` picks."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if config.spec.schedule.full is None and config.spec.schedule.incremental is None:
        raise BackupError(f"{config.component}: backup.schedule has neither full nor incremental")
    failed_at = -retry_after
    error: str | None = None
    told: dict[str, str] = {}
    while not stop.is_set():
        now = time.time()
        infos: list[BackupInfo] = []
        try:
            infos = [m.info() for m in config.stores[0].manifests()]
            kind = due(config.spec.schedule, infos, now)
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
        if status_file is not None:
            _write_status(status_file, _status_doc(config, instance, infos, error, now))
        stop.wait(check_every)


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
