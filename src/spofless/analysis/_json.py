"""The JSON report: the contract other tools and tests depend on.

Keys (keep them): name, ok, availability, downtime_minutes_per_year, spofs
(element, reason, recommendation, availability_if_fixed, ...), cut_sets,
importance ({element, birnbaum}, highest first), exact, availability_error,
findings (one per root cause: title, elements, fix lines, steps, availability_if_fixed),
availability_after_fixes, remaining_after_fixes, cut_set_groups, warnings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from spofless.analysis._report import Report
from spofless.topology import Location


def _location(loc: Location | None) -> dict[str, Any] | None:
    if loc is None:
        return None
    return {"file": loc.file, "line": loc.line, "column": loc.column}


def report_data(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {
        "name": report.name,
        "source": report.source,
        "ok": report.ok,
        "availability": report.availability,
        "exact": report.exact,
        "availability_error": report.availability_error,
        "unavailability": report.unavailability,
        "nines": None if math.isinf(report.nines) else round(report.nines, 3),
        "downtime_minutes_per_year": report.downtime_minutes_per_year,
        "max_order": report.max_order,
        "elements": report.elements,
        "spofs": [
            {
                "element": s.element,
                "components": list(s.components),
                "reason": s.reason,
                "recommendation": s.recommendation,
                "availability_if_fixed": s.availability_if_fixed,
                "location": _location(s.location),
            }
            for s in report.spofs
        ],
        "cut_sets": [list(c) for c in report.cut_sets],
        "cut_set_groups": [
            {"components": list(g.components), "text": g.text, "sets": g.sets}
            for g in report.cut_set_lines
        ],
        "findings": [
            {
                "title": f.title,
                "elements": list(f.elements),
                "components": list(f.components),
                "fix": list(f.fix),
                "steps": list(f.steps),
                "availability_if_fixed": f.availability_if_fixed,
                "location": _location(f.location),
            }
            for f in report.findings
        ],
        "availability_after_fixes": report.availability_after_fixes,
        "remaining_after_fixes": list(report.remaining_after_fixes),
        "warnings": [str(w) for w in report.warnings],
        "data_loss": [
            {"component": d.component, "mode": d.mode, "rpo_zero": d.rpo_zero, "text": d.text}
            for d in report.data_loss
        ],
        "recovery": [
            {
                "component": r.component,
                "data": r.data,
                "tier": r.tier,
                "rto": r.rto,
                "rpo": r.rpo,
                "rto_seconds": r.rto_seconds,
                "rpo_seconds": r.rpo_seconds,
                "region_loss": r.region_loss,
                "unmet": [
                    {"objective": u.objective, "declared": u.declared, "why": u.why, "fix": u.fix}
                    for u in r.unmet
                ],
            }
            for r in report.recovery
        ],
        "objectives_met": report.objectives_met,
        "importance": [{"element": i.element, "birnbaum": i.birnbaum} for i in report.importance],
        "components": [
            {
                "name": c.name,
                "kind": c.kind,
                "instances": c.instances,
                "min_up": c.min_up,
                "availability": c.availability,
                "location": _location(c.location),
            }
            for c in report.components
        ],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2) + "\n"
