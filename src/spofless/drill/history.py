"""Past drills of a topology: one row per drill in `<state dir>/drills.sqlite`.

Each row keeps the headline figures in columns (to sort and trend on) and the whole
JSON report beside them. `history_table` shows the last N with each RTO against the
mean of the drills before it (the trend).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

HISTORY_FILE = "drills.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    topology TEXT NOT NULL,
    plan TEXT NOT NULL,
    seed INTEGER,
    duration REAL NOT NULL,
    ok INTEGER NOT NULL,
    faults INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    rto REAL,
    detect REAL,
    recover REAL,
    lost_writes INTEGER,
    mispredicted INTEGER,
    report TEXT NOT NULL
)
"""


@contextlib.contextmanager
def _db(state_dir: Path) -> Iterator[sqlite3.Connection]:
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state_dir / HISTORY_FILE, timeout=10)
    try:
        conn.execute(_SCHEMA)
        yield conn
        conn.commit()
    finally:
        conn.close()


def append(state_dir: Path, doc: dict[str, Any]) -> None:
    """Add a drill's report to the history."""
    s = doc["summary"]
    with _db(state_dir) as conn:
        conn.execute(
            "INSERT INTO drills (started_at, topology, plan, seed, duration, ok, faults, errors,"
            " rto, detect, recover, lost_writes, mispredicted, report)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc["started_at"],
                doc["topology"],
                doc["plan"],
                doc["seed"],
                doc["duration"],
                int(bool(doc["ok"])),
                s["faults"],
                s["errors"],
                s["rto"],
                s["detect"],
                s["recover"],
                s["lost_writes"],
                s["mispredicted"],
                json.dumps(doc),
            ),
        )


def load(state_dir: Path, last: int = 20) -> list[dict[str, Any]]:
    """The last `last` drills, oldest first, each a dict of the columns."""
    if not (state_dir / HISTORY_FILE).exists():
        return []
    with _db(state_dir) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, started_at, topology, plan, seed, duration, ok, faults, errors, rto,"
            " detect, recover, lost_writes, mispredicted FROM drills ORDER BY id DESC LIMIT ?",
            (last,),
        ).fetchall()
    return [dict(r) for r in reversed(rows)]


def trend(values: list[float | None]) -> list[str]:
    """For each value, how it compares with the mean of those before it: `=`, `▲ +x%`
    (worse: higher), `▼ -x%`; `` for the first (pure)."""
    out = []
    seen: list[float] = []
    for v in values:
        if v is None or not seen:
            out.append("")
        else:
            mean = sum(seen) / len(seen)
            if mean == 0:
                out.append("=" if v == 0 else "▲")
            else:
                change = (v - mean) / mean
                out.append(
                    "=" if abs(change) < 0.05 else f"{'▲' if change > 0 else '▼'} {change:+.0%}"
                )
        if v is not None:
            seen.append(v)
    return out


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    nums = [v for v in values if v is not None]
    if not nums:
        return ""
    top = max(nums) or 1.0
    return "".join(" " if v is None else _BARS[min(7, int(v / top * 7))] for v in values)


def history_table(rows: list[dict[str, Any]]) -> Table:
    import datetime

    table = Table(box=None, pad_edge=False, header_style="bold")
    for c in ("#", "WHEN (UTC)", "PLAN", "OK", "FAULTS", "ERRORS", "RTO", "TREND", "DETECT"):
        table.add_column(c)
    table.add_column("RECOVER")
    table.add_column("LOST")
    table.add_column("MISPREDICTED")
    arrows = trend([r["rto"] for r in rows])
    for r, arrow in zip(rows, arrows, strict=True):
        when = datetime.datetime.fromtimestamp(r["started_at"], datetime.UTC)
        table.add_row(
            str(r["id"]),
            when.strftime("%Y-%m-%d %H:%M:%S"),
            r["plan"] + (f" seed {r['seed']}" if r["seed"] is not None else ""),
            Text("yes", "green") if r["ok"] else Text("no", "bold red"),
            str(r["faults"]),
            str(r["errors"]),
            "-" if r["rto"] is None else f"{r['rto']:.2f}s",
            arrow,
            "-" if r["detect"] is None else f"{r['detect']:.2f}s",
            "-" if r["recover"] is None else f"{r['recover']:.2f}s",
            "-" if r["lost_writes"] is None else str(r["lost_writes"]),
            str(r["mispredicted"] or 0),
        )
    return table
