"""The Markdown report, for a pull-request comment."""

from __future__ import annotations

from spofless.analysis._format import downtime, nines, percent
from spofless.analysis._report import Report

MAX_CUT_SETS = 50
MAX_IMPORTANCE = 10


def _where(report: Report, loc: object) -> str:
    return f" (`{loc}`)" if loc is not None else ""


def render_markdown(report: Report) -> str:
    out: list[str] = []
    status = (
        "✅ no single point of failure"
        if report.ok
        else f"❌ {len(report.spofs)} single point(s) of failure"
    )
    approx = "" if report.exact else f" ± {report.availability_error:.1e}"
    out.append(f"## spofless check: `{report.name}` — {status}\n")
    out.append(
        f"**Availability {percent(report.availability)}{approx}** "
        f"({nines(report.unavailability)}), expected downtime "
        f"{downtime(report.unavailability)}.\n"
    )
    if report.spofs:
        out.append("### Single points of failure\n")
        out.append("| Element | Why | Fix | Availability if fixed |")
        out.append("|---|---|---|---|")
        for s in report.spofs:
            out.append(
                f"| `{s.element}`{_where(report, s.location)} | {s.reason} | "
                f"{s.recommendation} | {percent(s.availability_if_fixed)} |"
            )
        out.append("")
    pairs = [c for c in report.cut_sets if len(c) > 1]
    if pairs:
        out.append(f"### Minimal cut sets of up to {report.max_order} elements ({len(pairs)})\n")
        out.extend("- " + " + ".join(f"`{e}`" for e in c) for c in pairs[:MAX_CUT_SETS])
        if len(pairs) > MAX_CUT_SETS:
            out.append(f"- … and {len(pairs) - MAX_CUT_SETS} more (see `--format json`)")
        out.append("")
    out.append("### Components\n")
    out.append("| Component | Kind | Instances | min_up | Availability |")
    out.append("|---|---|---|---|---|")
    for c in report.components:
        out.append(
            f"| `{c.name}` | {c.kind} | {c.instances} | {c.min_up} | {percent(c.availability)} |"
        )
    top = [i for i in report.importance[:MAX_IMPORTANCE] if i.birnbaum > 0]
    if top:
        out.append("\n### Most important elements (Birnbaum)\n")
        out.extend(f"- `{i.element}`: {i.birnbaum:.3g}" for i in top)
    return "\n".join(out) + "\n"
