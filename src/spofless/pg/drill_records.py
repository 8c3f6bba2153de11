"""Restore drill records read back: the newest, the summary the agents serve, its gauges.

    latest_drill(state_dir, component, ok_only=True)   the newest (good) record
    drill_summary(state_dir, component)                 the newest and the last good
    drill_metrics(summary, component)                   them in Prometheus text
    DrillSummaryCache(state_dir, component).get()       the summary, read again on change

spofless.backup writes the records (`<state dir>/drills/restore/<component>-<UTC
start>Z.json`, one per drill, good or failed); they are read here, below it, because
the PostgreSQL agents serve the summary at /status and /metrics, where the monitor
and Prometheus see a failed drill. `spofless check` reads the newest good drill for
the restore time it can promise; the backup scheduler the newest of any kind to know
when the next is due. Pure but for the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The phases of a restore drill's RTO, as recorded (DrillResult.to_json's `phases`).
PHASES = ("restore_files", "fetch_wal", "replay", "first_query")


def drills_dir(state_dir: Path) -> Path:
    return state_dir / "drills" / "restore"


def _records(state_dir: Path, component: str) -> list[dict[str, Any]]:
    """The records of `component`, newest first (unreadable ones skipped)."""
    out = []
    for path in sorted(drills_dir(state_dir).glob(f"{component}-*Z.json"), reverse=True):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("component") == component:
            out.append(doc)
    return out


def latest_drill(state_dir: Path, component: str, *, ok_only: bool = True) -> dict[str, Any] | None:
    """The newest recorded restore drill of `component` that restored (`ok_only`), or
    the newest of any kind; None when there is none. Records from before failed drills
    were recorded have no `ok`: they restored."""
    for doc in _records(state_dir, component):
        if not ok_only or doc.get("ok", True):
            return doc
    return None


def drill_summary(state_dir: Path, component: str) -> dict[str, Any] | None:
    """What the agents' /status serve of `component`'s drills, None when none ran:
    the newest drill (`at`, `ok`, `error`, `failed_phase`) and the figures of the last
    good one (`rto`, `phases`, `rpo`, `last_success_at`, `backup`)."""
    newest = latest_drill(state_dir, component, ok_only=False)
    if newest is None:
        return None
    good = newest if newest.get("ok", True) else latest_drill(state_dir, component)
    return {
        "at": newest.get("started_at"),
        "ok": bool(newest.get("ok", True)),
        "error": newest.get("error"),
        "failed_phase": newest.get("failed_phase"),
        "rto": good.get("rto") if good else None,
        "phases": good.get("phases") if good else None,
        "rpo": good.get("rpo") if good else None,
        "last_success_at": good.get("started_at") if good else None,
        "backup": good.get("backup") if good else None,
    }


def drill_metrics(summary: dict[str, Any] | None, component: str) -> list[str]:
    """`summary` as Prometheus gauges (text format 0.0.4, HELP and TYPE lines included);
    none when no drill ran. The RTO and RPO are the last good drill's."""
    if summary is None:
        return []
    label = f'component="{component}"'
    out: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, Any]]) -> None:
        samples = [(lab, v) for lab, v in samples if isinstance(v, int | float)]
        if not samples:
            return
        full = f"spofless_backup_restore_drill_{name}"
        out.extend([f"# HELP {full} {help_text}", f"# TYPE {full} gauge"])
        out.extend(f"{full}{{{lab}}} {float(v):g}" for lab, v in samples)

    gauge("failed", "the newest restore drill failed", [(label, int(not summary["ok"]))])
    gauge(
        "last_run_timestamp_seconds",
        "when the newest restore drill started",
        [(label, summary["at"])],
    )
    gauge(
        "last_success_timestamp_seconds",
        "when the newest restore drill that restored started",
        [(label, summary["last_success_at"])],
    )
    gauge(
        "rto_seconds", "the last good restore drill's RTO (every phase)", [(label, summary["rto"])]
    )
    phases = summary.get("phases") or {}
    gauge(
        "phase_seconds",
        "the last good restore drill's time per phase",
        [(f'{label},phase="{p}"', phases.get(p)) for p in PHASES],
    )
    gauge("rpo_seconds", "the last good restore drill's RPO", [(label, summary["rpo"])])
    return out


class DrillSummaryCache:
    """`drill_summary` read again only when the records' names changed (one was added):
    the agents' API asks at every request. By name, not the directory's mtime, which a
    temporary file and its rename can leave at one value."""

    def __init__(self, state_dir: Path, component: str) -> None:
        self.state_dir = state_dir
        self.component = component
        self._seen: tuple[int, str] | None = None
        self._summary: dict[str, Any] | None = None

    def get(self) -> dict[str, Any] | None:
        try:
            names = [n for n in os.listdir(drills_dir(self.state_dir)) if n.endswith("Z.json")]
        except OSError:
            return None
        changed = (len(names), max(names, default=""))
        if changed != self._seen:
            self._summary = drill_summary(self.state_dir, self.component)
            self._seen = changed
        return self._summary
