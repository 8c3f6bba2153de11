"""What happened, kept in SQLite: one database per monitor instance, bounded in rows.

    History(path, max_events).record(event)     append; the oldest rows go past the bound
    read_events(paths, limit) -> [Event]        the newest events of several monitors, merged

Each monitor records what it saw (instance state changes, flapping, failovers,
VIP hand-overs, live SPOFs appearing and resolved, notifications sent or
failed). The database is in WAL mode, so `spofless events` reads it while the
monitor writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    monitor TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
"""
# Trimming every insert would cost a DELETE each: trim once per this many inserts.
_TRIM_EVERY = 100


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    monitor: str
    kind: str  # instance_down, instance_up, catching_up, flapping, failover, ...
    subject: str  # the instance or component it concerns
    severity: str  # info, warning, error, critical
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "monitor": self.monitor,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity,
            "message": self.message,
            "data": self.data,
        }


class History:
    """One monitor's event log."""

    def __init__(self, path: Path, max_events: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_events = max_events
        self._db = sqlite3.connect(path, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # No fsync per event (WAL stays consistent; a power cut may lose the last few):
        # a slow disk must not stall the loop that looks at the system.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._inserts = 0

    def record(self, event: Event) -> None:
        self._db.execute(
            "INSERT INTO events (at, monitor, kind, subject, severity, message, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.at,
                event.monitor,
                event.kind,
                event.subject,
                event.severity,
                event.message,
                json.dumps(event.data, sort_keys=True),
            ),
        )
        self._inserts += 1
        if self._inserts % _TRIM_EVERY == 0:
            self.trim()
        self._db.commit()

    def trim(self) -> None:
        """Keep the newest `max_events` rows."""
        self._db.execute(
            "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.max_events,)
        )
        self._db.commit()

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def read_events(paths: Iterable[Path], limit: int) -> list[Event]:
    """The newest `limit` events of the databases at `paths`, oldest first."""
    out: list[Event] = []
    for path in paths:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute(
                "SELECT at, monitor, kind, subject, severity, message, data FROM events "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        except sqlite3.DatabaseError:
            rows = []
        finally:
            db.close()
        out += [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
    out.sort(key=lambda e: e.at)
    return out[-limit:]
