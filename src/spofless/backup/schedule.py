"""Backup schedules in cron syntax, and whether the newest backup is stale. Pure.

    Cron.parse("0 2 * * 1-6")           spofless.topology's cron (5 fields, or 6 with seconds)
    staleness(schedule, backups, now)   why the backups are behind schedule, or None
    due(schedule, backups, now)         the backup the scheduler should take now, if any
    drill_due(schedule, last, now)      whether a restore drill is due
    next_firing(schedule, now)          when the next of its schedules fires

Stale: a scheduled run was missed. The newest backup (of the kind, or of any kind
for the incremental schedule) started before the last time the schedule fired
`grace` (an hour) ago or more. A run may start late by up to the grace (the one
before still running, a restore drill in the way) and not be missed; for a daily
schedule that is "the run before the one due within the hour", and a schedule
every few seconds is stale once nothing has started for an hour.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Literal

from spofless.backup.plan import BackupInfo
from spofless.topology._backup import BackupSchedule
from spofless.topology._cron import Cron

__all__ = ["Cron", "drill_due", "due", "next_firing", "staleness"]

UTC = datetime.UTC


def staleness(
    schedule: BackupSchedule, backups: Sequence[BackupInfo], now: float, grace: float = 3600.0
) -> str | None:
    """Why the backups are behind `schedule` at `now` (a sentence), or None when they are not."""
    at = datetime.datetime.fromtimestamp(now, UTC)
    for kind, text in (("full", schedule.full), ("incremental", schedule.incremental)):
        if text is None:
            continue
        due = Cron.parse(text).previous(at - datetime.timedelta(seconds=grace))
        pool = [b for b in backups if kind == "incremental" or b.kind == "full"]
        newest = max((b.start_time for b in pool), default=None)
        if newest is None or newest < due.timestamp():
            since = "never" if newest is None else _iso(newest)
            return (
                f"stale: the {kind} backup due at {due:%Y-%m-%d %H:%M} UTC "
                f"({text!r}) did not run; newest {'full ' if kind == 'full' else ''}"
                f"backup started {since}"
            )
    return None


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def due(
    schedule: BackupSchedule, backups: Sequence[BackupInfo], now: float
) -> Literal["full", "incremental"] | None:
    """The kind of backup to take at `now`, or None; a full one wins over an incremental.

    A kind is due when its schedule fired since the newest backup that would have
    served it started (a full one for the full schedule, any for the incremental):
    so a run missed while the scheduler was down happens once when it is back,
    not once per missed firing."""
    at = datetime.datetime.fromtimestamp(now, UTC)
    for kind, text in (("full", schedule.full), ("incremental", schedule.incremental)):
        if text is None:
            continue
        fired = Cron.parse(text).previous(at).timestamp()
        pool = [b for b in backups if kind == "incremental" or b.kind == "full"]
        newest = max((b.start_time for b in pool), default=None)
        if newest is None or newest < fired:
            return "full" if kind == "full" else "incremental"
    return None


def drill_due(schedule: BackupSchedule, last: float | None, now: float) -> bool:
    """Whether a restore drill is due at `now`: its schedule fired since the last drill
    started (`last`, epoch; None: never), failed or not. Like `due`, a drill missed while
    the scheduler was down runs once when it is back, and a first one runs at once."""
    if schedule.drill is None:
        return False
    fired = Cron.parse(schedule.drill).previous(datetime.datetime.fromtimestamp(now, UTC))
    return last is None or last < fired.timestamp()


def next_firing(schedule: BackupSchedule, now: float) -> float | None:
    """When the next of `schedule`'s crons fires after `now` (epoch), None without any."""
    at = datetime.datetime.fromtimestamp(now, UTC)
    crons = (schedule.full, schedule.incremental, schedule.drill)
    return min((Cron.parse(c).next(at).timestamp() for c in crons if c), default=None)
