"""Benchmark: the monitor's gauge history at its bound, and what recording costs.

Fills one monitor's database as it is after a long run with the default retention
(raw 1 h at 10 s, 1-minute rows 1 d, 1-hour rows 35 d, 1-day rows 730 d) for `--instances` instances
with 6 gauges each, then measures: the file's size, one sample cycle (add every
gauge of every instance and compact: what the monitor does each gauge_interval), one
cycle that crosses an hour (the hour's roll-up), and reading every daily peak (what
`spofless trends` does). The same database grown naively (a raw sample every 10 s for
730 days, no downsampling) would hold 730 x 8640 rows per series: its size is
extrapolated from the raw table's bytes per row, as the ratio.
Run from the repository root: .venv/bin/python benchmarks/monitor_history/run.py
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from spofless.monitor import Retention, SeriesStore, daily_peaks

GAUGES = ("cpu", "memory", "requests", "latency_p50", "latency_p99", "lag")
DAY = 86400


def fill(path: Path, instances: int, now: float) -> None:
    """The three steps at their bound, written directly (as many compactions would)."""
    series = [(f"c{i // 2}/{i % 2}", g) for i in range(instances) for g in GAUGES]
    db = sqlite3.connect(path)
    start = int(now // 3600) * 3600
    day = int(now // 86400) * 86400
    db.executemany(
        "INSERT INTO rollups VALUES (86400, ?, ?, ?, 0.1, 0.9, 864.0, 8640, 0.8)",
        ((i, g, day - d * 86400) for d in range(1, 730) for i, g in series),
    )
    db.executemany(
        "INSERT INTO rollups VALUES (3600, ?, ?, ?, 0.1, 0.9, 36.0, 360, 0.8)",
        ((i, g, start - h * 3600) for h in range(1, 35 * 24) for i, g in series),
    )
    db.executemany(
        "INSERT INTO rollups VALUES (60, ?, ?, ?, 0.1, 0.9, 3.0, 6, 0.5)",
        ((i, g, start - m * 60) for m in range(1, 24 * 60) for i, g in series),
    )
    db.executemany(
        "INSERT INTO samples VALUES (?, ?, ?, 0.5)",
        ((i, g, now - s * 10) for s in range(1, 360) for i, g in series),
    )
    db.execute(
        "INSERT OR REPLACE INTO series_meta VALUES ('rolled_60', ?), ('rolled_3600', ?), "
        "('rolled_86400', ?)",
        (int(now // 60) * 60, start, day),
    )
    db.commit()
    db.execute("VACUUM")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=30)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "monitor-0.sqlite"
        now = 1_800_000_000.0 + 1800  # half past an hour
        SeriesStore(path, Retention()).close()
        fill(path, opts.instances, now)
        size = path.stat().st_size
        db = sqlite3.connect(path)
        counts = dict(db.execute("SELECT step, COUNT(*) FROM rollups GROUP BY step"))
        raw = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        db.close()
        n_series = opts.instances * len(GAUGES)
        rows = raw + sum(counts.values())
        store = SeriesStore(path, Retention())
        values = {(f"c{i // 2}/{i % 2}", g): 0.5 for i in range(opts.instances) for g in GAUGES}
        cycles = []
        for c in range(opts.cycles):
            at = now + c * 10
            t0 = time.perf_counter()
            store.add(at, values)
            store.compact(at)
            cycles.append(time.perf_counter() - t0)
        # A cycle that crosses the hour, then one that crosses the day: roll-ups.
        crossing = []
        for at in ((now // 3600 + 1) * 3600 + 5, (now // 86400 + 1) * 86400 + 5):
            t0 = time.perf_counter()
            store.add(at, values)
            store.compact(at)
            crossing.append(time.perf_counter() - t0)
        store.close()
        t0 = time.perf_counter()
        peaks = daily_peaks([path])
        read = time.perf_counter() - t0
        assert len(peaks) == n_series
        naive = n_series * 730 * 8640
        per_row = size / rows
        print(f"{opts.instances} instances x {len(GAUGES)} gauges = {n_series} series")
        print(
            f"rows: raw {raw}, 1-minute {counts.get(60, 0)}, 1-hour {counts.get(3600, 0)}, "
            f"1-day {counts.get(86400, 0)}"
        )
        print(f"rows per series: {rows / n_series:.0f}; file {size / 2**20:.1f} MiB")
        print(
            f"without downsampling: {naive:,} rows, ~{naive * per_row / 2**30:.1f} GiB "
            f"({naive / rows:.0f}x the rows)"
        )
        print(
            f"sample cycle (add + compact): median {statistics.median(cycles) * 1000:.1f} ms, "
            f"max {max(cycles) * 1000:.1f} ms over {len(cycles)}; "
            f"crossing an hour {crossing[0] * 1000:.1f} ms, a day {crossing[1] * 1000:.1f} ms"
        )
        print(f"every daily peak (spofless trends): {read * 1000:.0f} ms")


if __name__ == "__main__":
    main()
