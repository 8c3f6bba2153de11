"""SPOF analysis: single points of failure, minimal cut sets, availability, importance.

    analyze(topology, max_order=2) -> Report
    render(report, fmt) -> str          fmt: text, json, markdown or sarif

The semantics are docs/design.md's: elements (regions, zones, hosts, instances) fail
independently; a component is up when at least `min_up` of its instances are
up and what it needs is up; the system is up when every `entry` component is.
"""

from __future__ import annotations

from spofless.analysis._availability import AvailabilityResult, compute_availability
from spofless.analysis._json import render_json, report_data
from spofless.analysis._markdown import render_markdown
from spofless.analysis._report import (
    AnalysisError,
    ComponentSummary,
    Finding,
    Importance,
    Report,
    Spof,
    analyze,
)
from spofless.analysis._sarif import render_sarif
from spofless.analysis._structure import Structure, compile_structure
from spofless.analysis._text import render_text

FORMATS = ("text", "json", "markdown", "sarif")


def render(report: Report, fmt: str = "text", color: bool = False, width: int = 100) -> str:
    """The report in one of FORMATS; `color` adds terminal colours to text, whose lines
    fit in `width` columns."""
    if fmt == "text":
        return render_text(report, color=color, width=width)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "sarif":
        return render_sarif(report)
    raise AnalysisError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "AnalysisError",
    "AvailabilityResult",
    "ComponentSummary",
    "Finding",
    "Importance",
    "Report",
    "Spof",
    "Structure",
    "analyze",
    "compile_structure",
    "compute_availability",
    "render",
    "report_data",
]
