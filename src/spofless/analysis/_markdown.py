"""The Markdown report, for a pull-request comment: the text report's content and cuts."""

from __future__ import annotations

from spofless.analysis._cutgroups import MAX_CUT_SET_LINES
from spofless.analysis._format import downtime, gain, nines, percent
from spofless.analysis._report import Report
from spofless.analysis._text import MAX_IMPORTANCE


def _md(text: str) -> str:
    """Text safe in a table cell or list item."""
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    out: list[str] = []
    if report.ok:
        status = "✅ no single point of failure"
    else:
        n, causes = len(report.spofs), len(report.findings)
        status = (
            f"❌ {n} single point{'s' if n > 1 else ''} of failure, "
            f"{causes} cause{'s' if causes > 1 else ''}"
        )
    approx = "" if report.exact else f" ± {report.availability_error:.1e}"
    out.append(f"## spofless check: `{report.name}` — {status}\n")
    out.append(
        f"**Availability {percent(report.availability)}{approx}** "
        f"({nines(report.unavailability)}), expected downtime "
        f"{downtime(report.unavailability)}."
    )
    if report.availability_after_fixes is not None:
        after = report.availability_after_fixes
        left = (
            f"still: {', '.join(f'`{e}`' for e in report.remaining_after_fixes)}"
            if report.remaining_after_fixes
            else "no single point of failure"
        )
        out.append(
            f"After all fixes below: **{percent(after)}** ({nines(1 - after)}, "
            f"{downtime(1 - after)}), {left}."
        )
    out.append("")
    if report.warnings:
        out.append("### Warnings\n")
        out.extend(f"- {_md(str(w))}" for w in report.warnings)
        out.append("")
    if report.findings:
        out.append("### Single points of failure\n")
        for f in report.findings:
            where = f" (`{f.location}`)" if f.location is not None else ""
            out.append(f"**{_md(f.title)}**{where}  ")
            out.append(f"fails: {', '.join(f'`{e}`' for e in f.elements)}\n")
            out.extend(f"- {_md(line)}" for line in f.fix)
            out.extend(f"- also: {_md(line)}" for line in f.steps)
            out.append(
                f"- → {percent(f.availability_if_fixed)} with this fix alone "
                f"({gain(report.availability, f.availability_if_fixed)})\n"
            )
    lines = report.cut_set_lines
    if lines:
        total = sum(line.sets for line in lines)
        out.append(f"### Minimal cut sets of 2 to {report.max_order} elements ({total})\n")
        out.extend(
            f"- **{', '.join(line.components)}**: {_md(line.text)}"
            for line in lines[:MAX_CUT_SET_LINES]
        )
        if len(lines) > MAX_CUT_SET_LINES:
            rest = sum(line.sets for line in lines[MAX_CUT_SET_LINES:])
            out.append(f"- … and {rest} more (`--format json` lists all)")
        out.append("")
    out.append("### Components\n")
    out.append("| Component | Kind | Instances | min_up | Availability |")
    out.append("|---|---|---|---|---|")
    for c in report.components:
        out.append(
            f"| `{c.name}` | {c.kind} | {c.instances} | {c.min_up} | {percent(c.availability)} |"
        )
    if report.recovery:
        out.append("\n### Disaster recovery\n")
        out.append("| Entry | Data | Tier | RTO | RPO |")
        out.append("|---|---|---|---|---|")
        for r in report.recovery:
            out.append(f"| `{r.component}` | `{r.data}` | {r.tier} | {r.rto} | {r.rpo} |")
        if any(r.region_loss for r in report.recovery) or not report.objectives_met:
            out.append("")
        for r in report.recovery:
            if r.region_loss:
                out.append(f"- Losing the region of `{r.data}`: {r.region_loss}")
        for r in report.recovery:
            for u in r.unmet:
                out.append(
                    f"- **{u.objective.upper()} {u.declared:g} s cannot be met** for "
                    f"`{r.component}`: {u.why}. Fix: {u.fix}"
                )
    top = [i for i in report.importance[:MAX_IMPORTANCE] if i.birnbaum > 0]
    if top:
        out.append("\n### Most important elements (Birnbaum)\n")
        out.extend(f"- `{i.element}`: {i.birnbaum:.3g}" for i in top)
    return "\n".join(out) + "\n"
