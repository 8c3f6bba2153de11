"""Backup schedules in cron syntax, and whether the newest backup is stale. Pure.

    Cron.parse("0 2 * * 1-6")           five fields: minute hour day-of-month month weekday
    Cron.previous(t) -> datetime        the last time at or before t it fires
    staleness(schedule, backups, now)   why the backups are behind schedule, or None
    due(schedule, backups, now)         the backup the scheduler should take now, if any

Fields take `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n`, `a-b/n`;
weekday 0 and 7 are Sunday. As in cron, when both day-of-month and weekday are
restricted, a day matching either fires. Times are UTC.

Stale: a scheduled run was missed. The newest backup (of the kind, or of any kind
for the incremental schedule) started before the last time the schedule fired,
and that was `grace` (an hour) ago or more; within the grace the run may still be
starting or running, so only the run before it counts.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from spofless.backup.plan import BackupInfo
from spofless.topology._backup import BackupSchedule

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "weekday")
UTC = datetime.UTC


def _field(text: str, lo: int, hi: int, what: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            a_s, b_s = base.split("-", 1)
            a, b = int(a_s), int(b_s)
        else:
            a = b = int(base)
            if step_s:
                b = hi
        if not (lo <= a <= b <= hi) or step < 1:
            raise ValueError(f"cron {what} {part!r} outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(f"cron {text!r} must have 5 fields (minute hour day month weekday)")
        try:
            sets = [
                _field(f, lo, hi, what)
                for f, (lo, hi), what in zip(fields, _RANGES, _NAMES, strict=True)
            ]
        except ValueError as exc:
            raise ValueError(f"cron {text!r}: {exc}") from None
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(
            text, sets[0], sets[1], sets[2], sets[3], weekdays, fields[2] == "*", fields[4] == "*"
        )

    def _day_matches(self, t: datetime.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def previous(self, t: datetime.datetime) -> datetime.datetime:
        """The last time at or before `t` that this schedule fires."""
        t = t.astimezone(UTC).replace(second=0, microsecond=0)
        limit = t - datetime.timedelta(days=366 * 5)
        while t > limit:
            if t.month not in self.months or not self._day_matches(t):
                t = t.replace(hour=23, minute=59) - datetime.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=59) - datetime.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t -= datetime.timedelta(minutes=1)
            else:
                return t
        raise ValueError(f"cron {self.text!r} never fires")


def staleness(
    schedule: BackupSchedule, backups: Sequence[BackupInfo], now: float, grace: float = 3600.0
) -> str | None:
    """Why the backups are behind `schedule` at `now` (a sentence), or None when they are not."""
    at = datetime.datetime.fromtimestamp(now, UTC)
    for kind, text in (("full", schedule.full), ("incremental", schedule.incremental)):
        if text is None:
            continue
        cron = Cron.parse(text)
        due = cron.previous(at)
        if now - due.timestamp() < grace:
            due = cron.previous(due - datetime.timedelta(minutes=1))
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
