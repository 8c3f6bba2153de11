"""Cron schedules: parsed once, when the topology is loaded (so a bad one is a file:line
error), and asked when they fire. Pure.

    Cron.parse("0 2 * * 1-6")           five fields: minute hour day-of-month month weekday
    Cron.parse("*/20 * * * * *")        six: a seconds field first (as Quartz and Spring)
    Cron.previous(t) -> datetime        the last time at or before t it fires
    Cron.next(t) -> datetime            the first time after t it fires

Fields take `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n`, `a-b/n`, `a/n`;
weekday 0 and 7 are Sunday. As in cron, when both day-of-month and weekday are
restricted, a day matching either fires. Times are UTC. Five fields fire at second 0.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("second", "minute", "hour", "day of month", "month", "weekday")
UTC = datetime.UTC
# A schedule that fires less often than this never fires (e.g. 31 February).
_HORIZON = datetime.timedelta(days=366 * 5)


def _field(text: str, lo: int, hi: int, what: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_s = part.partition("/")
        try:
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
        except ValueError:
            raise ValueError(f"cron {what} {part!r} is not a number, range or step") from None
        if not (lo <= a <= b <= hi) or step < 1:
            raise ValueError(f"cron {what} {part!r} outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    text: str
    seconds: frozenset[int]
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
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise ValueError(
                f"cron {text!r} must have 5 fields (minute hour day month weekday), "
                "or 6 with seconds first"
            )
        try:
            sets = [
                _field(f, lo, hi, what)
                for f, (lo, hi), what in zip(fields, _RANGES, _NAMES, strict=True)
            ]
        except ValueError as exc:
            raise ValueError(f"cron {text!r}: {exc}") from None
        weekdays = frozenset(d % 7 for d in sets[5])
        second, minute, hour, day, month = sets[:5]
        cron = cls(
            text, second, minute, hour, day, month, weekdays, fields[3] == "*", fields[5] == "*"
        )
        cron.previous(datetime.datetime(2030, 1, 1, tzinfo=UTC))  # raises if it never fires
        return cron

    def _day_matches(self, t: datetime.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def previous(self, t: datetime.datetime) -> datetime.datetime:
        """The last time at or before `t` that this schedule fires."""
        t = t.astimezone(UTC).replace(microsecond=0)
        limit = t - _HORIZON
        while t > limit:
            if t.month not in self.months or not self._day_matches(t):
                t = t.replace(hour=23, minute=59, second=59) - datetime.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=59, second=59) - datetime.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=59) - datetime.timedelta(minutes=1)
            else:
                second = max((s for s in self.seconds if s <= t.second), default=None)
                if second is not None:
                    return t.replace(second=second)
                t = t.replace(second=59) - datetime.timedelta(minutes=1)
        raise ValueError(f"cron {self.text!r} never fires")

    def next(self, t: datetime.datetime) -> datetime.datetime:
        """The first time after `t` that this schedule fires."""
        t = t.astimezone(UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
        limit = t + _HORIZON
        while t < limit:
            if t.month not in self.months or not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + datetime.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + datetime.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + datetime.timedelta(minutes=1)
            else:
                second = min((s for s in self.seconds if s >= t.second), default=None)
                if second is not None:
                    return t.replace(second=second)
                t = t.replace(second=0) + datetime.timedelta(minutes=1)
        raise ValueError(f"cron {self.text!r} never fires")


def check_cron(text: str) -> str:
    """A pydantic validator: `text` if it parses, ValueError saying why not."""
    Cron.parse(text)
    return text
