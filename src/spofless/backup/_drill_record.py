"""Restore drills recorded: one JSON file per drill, good or failed, in the state directory.

    <state dir>/drills/restore/<component>-<UTC start>Z.json

    record_drill(state_dir, component, repository, result)    a drill that restored
    record_failed_drill(state_dir, component, repository, err) one that did not
    history_document(record, topology)                         a row of `drill history`

Every file is written whole (atomically). Reading them back (the newest, the summary
the PostgreSQL agents serve, its gauges) is spofless.pg.drill_records: the agents
serve them below this package. Pure but for the files.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from spofless.backup._drill import DrillResult
from spofless.backup._errors import RestoreDrillError
from spofless.pg.drill_records import drills_dir


def write_record(state_dir: Path, doc: dict[str, Any]) -> Path:
    """Write a drill's record (DrillResult.to_json or failed_record) atomically."""
    stamp = datetime.datetime.fromtimestamp(doc["started_at"], datetime.UTC)
    path = drills_dir(state_dir) / f"{doc['component']}-{stamp:%Y%m%dT%H%M%S}Z.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def record_drill(state_dir: Path, component: str, repository: str, result: DrillResult) -> Path:
    """Write `result` as JSON under `state_dir` (atomically); returns the file."""
    return write_record(state_dir, result.to_json(component, repository))


def failed_record(
    component: str, repository: str, error: RestoreDrillError, ended_at: float
) -> dict[str, Any]:
    """The record of a drill that failed (pure)."""
    return {
        "kind": "restore",
        "ok": False,
        "component": component,
        "repository": repository,
        "started_at": error.started_at,
        "ended_at": ended_at,
        "failed_phase": error.phase,
        "error": error.reason,
    }


def record_failed_drill(
    state_dir: Path, component: str, repository: str, error: RestoreDrillError, ended_at: float
) -> Path:
    """Write the record of a failed drill; returns the file."""
    return write_record(state_dir, failed_record(component, repository, error, ended_at))


def history_document(record: dict[str, Any], topology: str) -> dict[str, Any]:
    """A drill record as a row of the drill history (spofless.drill.history.append):
    plan `restore <component>`, one fault (every server lost), the RTO; detect and
    recover do not apply, RPO is in the record (`restore`), not a count of writes."""
    ok = bool(record.get("ok", True))
    started = float(record["started_at"])
    return {
        "topology": topology,
        "plan": f"restore {record['component']}",
        "seed": None,
        "started_at": started,
        "duration": max(0.0, float(record.get("ended_at") or started) - started),
        "ok": ok,
        "summary": {
            "faults": 1,
            "errors": 0 if ok else 1,
            "rto": record.get("rto") if ok else None,
            "detect": None,
            "recover": None,
            "lost_writes": None,
            "mispredicted": 0,
        },
        "restore": record,
    }
