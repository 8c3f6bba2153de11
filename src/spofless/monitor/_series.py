"""Gauges over time, kept in the monitor's SQLite database with a bounded size.

    SeriesStore(path, retention).add(at, {(instance, gauge): value})
    .compact(now)                    roll finished periods up, remove what is past its keep
    .recent(since) -> {instance: {gauge: [(at, value)]}}    for the dashboard's charts
    daily_peaks(paths) -> {(instance, gauge): {day: peak}}  for `spofless trends`

Four steps, as an RRD keeps them (RRDtool, Graphite's whisper):

    raw samples     every gauge_interval              kept keep_raw      (1 h)
    1-minute rows   min, max, sum, count, peak        kept keep_minutes  (1 d)
    1-hour rows     the same                          kept keep_hours    (35 d)
    1-day rows      the same                          kept keep_days     (2 years)

`peak` is the highest 1-minute average within the row: a day's peak is the
highest minute of sustained load, not one noisy sample. Each step is rolled up
from the one below once its period is over (a watermark per step, in the
database, so a restarted monitor goes on where it stopped; rows are written
with INSERT OR REPLACE, so rolling a period twice is harmless) and before the
rows below go. The size is bounded: per series (an instance's gauge) at most
keep_raw/gauge_interval + keep_minutes/60 + keep_hours/3600 + keep_days/86400
rows, about 3,400 with the defaults (benchmarks/monitor_history: 240 series,
45 MiB); the series are the topology's instances times their gauges.

The monitor calls it from a worker thread (a roll-up must not stall the loop
that looks at the system); one lock serializes the calls on its connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    instance TEXT NOT NULL,
    gauge TEXT NOT NULL,
    at REAL NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_at ON samples (at);
CREATE TABLE IF NOT EXISTS rollups (
    step INTEGER NOT NULL,
    instance TEXT NOT NULL,
    gauge TEXT NOT NULL,
    start REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    sum REAL NOT NULL,
    count INTEGER NOT NULL,
    peak REAL NOT NULL,
    PRIMARY KEY (step, start, instance, gauge)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
MINUTE = 60
HOUR = 3600
DAY = 86400
# Each step and the one it is rolled up from.
_STEPS = ((HOUR, MINUTE), (DAY, HOUR))


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each step is kept, in seconds (the monitor's keep_* fields)."""

    raw: float = 3600.0
    minutes: float = 86400.0
    hours: float = 35 * 86400.0
    days: float = 730 * 86400.0


class SeriesStore:
    """One monitor's gauges; its own connection to the monitor's database (WAL mode)."""

    def __init__(self, path: Path, retention: Retention) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def add(self, at: float, values: Mapping[tuple[str, str], float]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT INTO samples (instance, gauge, at, value) VALUES (?, ?, ?, ?)",
                [(inst, gauge, at, float(v)) for (inst, gauge), v in values.items()],
            )
            self._db.commit()

    def set_meta(self, key: str, value: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO series_meta VALUES (?, ?)", (key, value))
            self._db.commit()

    def _meta(self, key: str) -> float:
        row = self._db.execute("SELECT value FROM series_meta WHERE key = ?", (key,)).fetchone()
        return 0.0 if row is None else float(row[0])

    def compact(self, now: float) -> None:
        """Roll every finished minute, hour and day up, then remove what is past its keep."""
        with self._lock:
            self._compact(now)

    def _compact(self, now: float) -> None:
        db = self._db
        ends = {step: float(int(now // step) * step) for step in (MINUTE, HOUR, DAY)}
        db.execute(
            "INSERT OR REPLACE INTO rollups "
            "SELECT 60, instance, gauge, CAST(at / 60 AS INTEGER) * 60 AS s, "
            "MIN(value), MAX(value), SUM(value), COUNT(*), AVG(value) "
            "FROM samples WHERE at >= ? AND at < ? GROUP BY instance, gauge, s",
            (self._meta(f"rolled_{MINUTE}"), ends[MINUTE]),
        )
        for step, below in _STEPS:
            db.execute(
                "INSERT OR REPLACE INTO rollups "
                f"SELECT {step}, instance, gauge, CAST(start / {step} AS INTEGER) * {step} AS s, "
                "MIN(min), MAX(max), SUM(sum), SUM(count), MAX(peak) "
                "FROM rollups WHERE step = ? AND start >= ? AND start < ? "
                "GROUP BY instance, gauge, s",
                (below, self._meta(f"rolled_{step}"), ends[step]),
            )
        db.executemany(
            "INSERT OR REPLACE INTO series_meta VALUES (?, ?)",
            [(f"rolled_{step}", end) for step, end in ends.items()],
        )
        r = self.retention
        db.execute("DELETE FROM samples WHERE at < ?", (min(now - r.raw, ends[MINUTE]),))
        # A step's rows go once past their keep and rolled into the next step.
        for step, keep, rolled in (
            (MINUTE, r.minutes, ends[HOUR]),
            (HOUR, r.hours, ends[DAY]),
            (DAY, r.days, now),
        ):
            db.execute(
                "DELETE FROM rollups WHERE step = ? AND start < ?", (step, min(now - keep, rolled))
            )
        db.commit()

    def recent(self, since: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
        """The raw samples since `since`, per instance and gauge, oldest first."""
        out: dict[str, dict[str, list[tuple[float, float]]]] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT instance, gauge, at, value FROM samples WHERE at >= ? ORDER BY at",
                (since,),
            ).fetchall()
        for inst, gauge, at, value in rows:
            out.setdefault(inst, {}).setdefault(gauge, []).append((at, value))
        return out

    def rows(self) -> dict[str, int]:
        """How many rows each step holds (what the bound is about)."""
        with self._lock:
            raw = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            steps = dict(self._db.execute("SELECT step, COUNT(*) FROM rollups GROUP BY step"))
        return {
            "raw": int(raw),
            "minutes": int(steps.get(MINUTE, 0)),
            "hours": int(steps.get(HOUR, 0)),
            "days": int(steps.get(DAY, 0)),
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


DailyPeaks = dict[tuple[str, str], dict[float, float]]


def daily_peaks(paths: Iterable[Path]) -> DailyPeaks:
    """Per (instance, gauge), each UTC day's peak (its highest 1-minute average), merged
    over the monitors' databases at `paths` (the highest wins: each monitor measures the
    same thing, and one that was down that day is filled in by another)."""
    out: DailyPeaks = {}
    for path in paths:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            # Days rolled, then the hours and minutes not rolled yet (the max over steps
            # is the same peak: a day's peak is its hours' highest, theirs their minutes').
            rolled = dict(db.execute("SELECT key, value FROM series_meta"))
            rows = db.execute(
                "SELECT instance, gauge, start, peak FROM rollups WHERE step = ?", (DAY,)
            ).fetchall()
            for step, since in (
                (HOUR, rolled.get(f"rolled_{DAY}", 0.0)),
                (MINUTE, rolled.get(f"rolled_{HOUR}", 0.0)),
            ):
                rows += db.execute(
                    "SELECT instance, gauge, CAST(start / 86400 AS INTEGER) * 86400 AS d, "
                    "MAX(peak) FROM rollups WHERE step = ? AND start >= ? "
                    "GROUP BY instance, gauge, d",
                    (step, since),
                ).fetchall()
        except sqlite3.DatabaseError:
            rows = []  # a monitor that never recorded a gauge: no table
        finally:
            db.close()
        for inst, gauge, day, peak in rows:
            days = out.setdefault((inst, gauge), {})
            days[float(day)] = max(peak, days.get(float(day), peak))
    return out


def read_meta(paths: Iterable[Path], key: str) -> float | None:
    """The largest value of `key` in the databases' meta (the host's cores, its memory)."""
    found: list[float] = []
    for path in paths:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            row = db.execute("SELECT value FROM series_meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            row = None
        finally:
            db.close()
        if row is not None:
            found.append(float(row[0]))
    return max(found) if found else None
