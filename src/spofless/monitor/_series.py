"""Gauges over time, kept in the monitor's SQLite database with a bounded size.

    SeriesStore(path, retention).add(at, {(instance, gauge): value})
    .compact(now)                    roll raw samples up, remove what is past its keep
    .recent(since) -> {instance: {gauge: [(at, value)]}}    for the dashboard's charts
    daily_peaks(paths) -> {(instance, gauge): {day: peak}}  for `spofless trends`

Three steps, as an RRD keeps them (RRDtool, Graphite's whisper):

    raw samples     every gauge_interval      kept keep_raw      (1 h)
    1-minute rows   min, max, sum, count      kept keep_minutes  (2 d)
    1-hour rows     the same, and `peak`      kept keep_hours    (400 d)

`peak` is the highest 1-minute average within the row: a day's peak is the
highest minute of sustained load, not one noisy sample. Each step is rolled up
from the one below once its period is over (a watermark per step, in the
database, so a restarted monitor goes on where it stopped; rows are written
with INSERT OR REPLACE, so rolling a period twice is harmless) and before the
rows below go. The size is bounded: per series (an instance's gauge) at most
keep_raw/gauge_interval + keep_minutes/60 + keep_hours/3600 rows, about 13,000
with the defaults; the series are the topology's instances times their gauges.
"""

from __future__ import annotations

import sqlite3
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


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each step is kept, in seconds (the monitor's keep_* fields)."""

    raw: float = 3600.0
    minutes: float = 2 * 86400.0
    hours: float = 400 * 86400.0


class SeriesStore:
    """One monitor's gauges; its own connection to the monitor's database (WAL mode)."""

    def __init__(self, path: Path, retention: Retention) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._db = sqlite3.connect(path, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def add(self, at: float, values: Mapping[tuple[str, str], float]) -> None:
        self._db.executemany(
            "INSERT INTO samples (instance, gauge, at, value) VALUES (?, ?, ?, ?)",
            [(inst, gauge, at, float(v)) for (inst, gauge), v in values.items()],
        )
        self._db.commit()

    def set_meta(self, key: str, value: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO series_meta VALUES (?, ?)", (key, value))
        self._db.commit()

    def meta(self, key: str) -> float | None:
        row = self._db.execute("SELECT value FROM series_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def compact(self, now: float) -> None:
        """Roll every finished minute and hour up, then remove what is past its keep."""
        db = self._db
        minute_end = float(int(now // MINUTE) * MINUTE)
        since = self.meta("rolled_minutes") or 0.0
        db.execute(
            "INSERT OR REPLACE INTO rollups "
            "SELECT 60, instance, gauge, CAST(at / 60 AS INTEGER) * 60 AS s, "
            "MIN(value), MAX(value), SUM(value), COUNT(*), AVG(value) "
            "FROM samples WHERE at >= ? AND at < ? GROUP BY instance, gauge, s",
            (since, minute_end),
        )
        hour_end = float(int(now // HOUR) * HOUR)
        since = self.meta("rolled_hours") or 0.0
        db.execute(
            "INSERT OR REPLACE INTO rollups "
            "SELECT 3600, instance, gauge, CAST(start / 3600 AS INTEGER) * 3600 AS s, "
            "MIN(min), MAX(max), SUM(sum), SUM(count), MAX(peak) "
            "FROM rollups WHERE step = 60 AND start >= ? AND start < ? "
            "GROUP BY instance, gauge, s",
            (since, hour_end),
        )
        db.executemany(
            "INSERT OR REPLACE INTO series_meta VALUES (?, ?)",
            [("rolled_minutes", minute_end), ("rolled_hours", hour_end)],
        )
        r = self.retention
        db.execute("DELETE FROM samples WHERE at < ?", (min(now - r.raw, minute_end),))
        db.execute(
            "DELETE FROM rollups WHERE step = 60 AND start < ?",
            (min(now - r.minutes, hour_end),),
        )
        db.execute("DELETE FROM rollups WHERE step = 3600 AND start < ?", (now - r.hours,))
        db.commit()

    def recent(self, since: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
        """The raw samples since `since`, per instance and gauge, oldest first."""
        out: dict[str, dict[str, list[tuple[float, float]]]] = {}
        rows = self._db.execute(
            "SELECT instance, gauge, at, value FROM samples WHERE at >= ? ORDER BY at", (since,)
        )
        for inst, gauge, at, value in rows:
            out.setdefault(inst, {}).setdefault(gauge, []).append((at, value))
        return out

    def rows(self) -> dict[str, int]:
        """How many rows each step holds (what the bound is about)."""
        raw = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        steps = dict(self._db.execute("SELECT step, COUNT(*) FROM rollups GROUP BY step"))
        return {"raw": int(raw), "minutes": int(steps.get(60, 0)), "hours": int(steps.get(3600, 0))}

    def close(self) -> None:
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
            # Hours rolled, and the minutes of the hours not rolled yet (the max of both
            # is the same peak: an hour's peak is its minutes' highest).
            rows = db.execute(
                "SELECT instance, gauge, CAST(start / 86400 AS INTEGER) * 86400 AS d, MAX(peak) "
                "FROM rollups GROUP BY instance, gauge, d"
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
