"""The terminal report: a verdict first, then findings grouped by severity.

Lines fit the given width (the terminal's when there is one); a finding's
labels stay in their column when its text wraps.
"""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.table import Table
from rich.text import Text

from spofless.analysis._cutgroups import MAX_CUT_SET_LINES
from spofless.analysis._format import downtime, gain, nines, percent
from spofless.analysis._report import Report

MAX_IMPORTANCE = 8
WIDTH = 100  # when the output is not a terminal


def render_text(report: Report, color: bool = False, width: int = WIDTH) -> str:
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=max(40, width),
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
    )
    _header(console, report)
    _warnings(console, report)
    _findings(console, report)
    _cut_sets(console, report)
    _components(console, report)
    _data_loss(console, report)
    _recovery(console, report)
    _importance(console, report)
    # Grid cells are padded to their column's width: drop the trailing blanks.
    return _TRAILING.sub(r"\1", buf.getvalue())


# Blanks at the end of a line, before any colour codes that end it.
_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$", re.MULTILINE)


def _header(console: Console, report: Report) -> None:
    title = Text.assemble(("spofless check", "bold"), " · ", (report.name, "bold cyan"))
    title.append(f"  ({report.source}, {report.elements} elements)", style="dim")
    console.print(title)
    if report.ok:
        verdict = Text("✓ no single point of failure", style="bold green")
    else:
        n, causes = len(report.spofs), len(report.findings)
        verdict = Text(f"✗ {n} single point{'s' if n > 1 else ''} of failure", style="bold red")
        verdict.append(f", {causes} cause{'s' if causes > 1 else ''}", style="red")
    console.print(verdict)
    console.print(_figures("availability", report.availability, report, exact=report.exact))
    if report.availability_after_fixes is not None:
        n = len(report.findings)
        label = {1: "after the fix", 2: "after both fixes"}.get(n, f"after all {n} fixes")
        console.print(_figures(label, report.availability_after_fixes, report, exact=True))
        if report.remaining_after_fixes:
            left = Text(f"  still: {', '.join(report.remaining_after_fixes)}", style="yellow")
        else:
            left = Text("  (and no single point of failure left)", style="green")
        console.print(left)


def _figures(label: str, availability: float, report: Report, *, exact: bool) -> Text:
    line = Text(f"  {label} ")
    line.append(percent(availability), style="bold")
    if not exact:
        line.append(f" ± {report.availability_error:.1e}", style="yellow")
    line.append(f"  ({nines(1.0 - availability)})   downtime ")
    line.append(downtime(1.0 - availability), style="bold")
    if label == "availability":
        line.append("   exact" if report.exact else "   bounded (not exact)", style="dim")
    return line


def _section(console: Console, label: str, style: str, title: str) -> None:
    console.print()
    console.print(Text.assemble((f" {label} ", f"bold reverse {style}"), " ", (title, "bold")))


def _warnings(console: Console, report: Report) -> None:
    if not report.warnings:
        return
    _section(console, "WARNING", "yellow", f"check these ({len(report.warnings)})")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for w in report.warnings:
        grid.add_row(Text("  !", style="yellow"), Text(str(w)))
    console.print(grid)


def _findings(console: Console, report: Report) -> None:
    if not report.findings:
        return
    n = len(report.findings)
    _section(
        console,
        "ERROR",
        "red",
        f"single points of failure: {n} cause{'s' if n > 1 else ''} to fix",
    )
    for f in report.findings:
        console.print(Text.assemble(("  ✗ ", "red"), (f.title, "bold")))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="dim")
        grid.add_column(overflow="fold")
        if f.location is not None:
            grid.add_row("      at", Text(str(f.location), style="dim"))
        grid.add_row("      fails", Text(", ".join(f.elements)))
        for i, line in enumerate(f.fix):
            grid.add_row("      fix" if i == 0 else "", Text(line))
        for i, line in enumerate(f.steps):
            grid.add_row("      also" if i == 0 else "", Text(line))
        gained = Text(percent(f.availability_if_fixed), style="green")
        gained.append(
            f" with this fix alone ({gain(report.availability, f.availability_if_fixed)})"
        )
        grid.add_row("      →", gained)
        console.print(grid)


def _cut_sets(console: Console, report: Report) -> None:
    lines = report.cut_set_lines
    if not lines:
        return
    total = sum(line.sets for line in lines)
    _section(
        console,
        "WARNING",
        "yellow",
        f"minimal cut sets of 2 to {report.max_order} elements ({total})",
    )
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines[:MAX_CUT_SET_LINES]:
        what = Text(f"{', '.join(line.components)}: ", style="bold")
        what.append(line.text)
        grid.add_row(Text("  •", style="yellow"), what)
    console.print(grid)
    if len(lines) > MAX_CUT_SET_LINES:
        rest = sum(line.sets for line in lines[MAX_CUT_SET_LINES:])
        console.print(Text(f"  … and {rest} more (--format json lists all)", "dim"))


def _components(console: Console, report: Report) -> None:
    _section(console, "INFO", "blue", "required components")
    table = Table(box=None, padding=(0, 2), show_edge=False, pad_edge=False)
    for col, justify in (
        ("  component", "left"),
        ("kind", "left"),
        ("up/instances", "right"),
        ("availability", "right"),
        ("downtime", "right"),
    ):
        table.add_column(col, justify=justify, style=None, header_style="dim")  # type: ignore[arg-type]
    for c in sorted(report.components, key=lambda c: c.availability):
        table.add_row(
            f"  {c.name}",
            c.kind,
            f"{c.min_up}/{c.instances}",
            percent(c.availability),
            downtime(1.0 - c.availability),
        )
    console.print(table)


def _data_loss(console: Console, report: Report) -> None:
    if not report.data_loss:
        return
    _section(console, "INFO", "blue", "data a failover can lose (RPO)")
    width = max(len(d.component) for d in report.data_loss)
    for d in report.data_loss:
        console.print(Text(f"  {d.component:<{width}}  {d.mode}: {d.text}"))


def _recovery(console: Console, report: Report) -> None:
    if not report.recovery:
        return

    def lines(rows: list[tuple[str, str]]) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for label, text in rows:
            grid.add_row(label, text)
        console.print(grid)

    unmet = sum(len(r.unmet) for r in report.recovery)
    if unmet:
        _section(console, "FAIL", "red", f"recovery objectives the design cannot meet ({unmet})")
        for r in report.recovery:
            for u in r.unmet:
                what = f"{u.objective.upper()} {u.declared:g} s"
                console.print(Text(f"  ✗ {r.component} ({r.data}): {what}"))
                lines([("      why ", u.why), ("      fix ", u.fix)])
    _section(console, "INFO", "blue", "disaster recovery (tier, RTO, RPO) per entry component")
    for r in report.recovery:
        console.print(Text(f"  {r.component} ({r.data}): {r.tier}"))
        rows = [("      RTO ", r.rto), ("      RPO ", r.rpo)]
        if r.region_loss:
            rows.append(("      region loss ", r.region_loss))
        lines(rows)


def _importance(console: Console, report: Report) -> None:
    top = [i for i in report.importance[:MAX_IMPORTANCE] if i.birnbaum > 0]
    if not top:
        return
    _section(console, "INFO", "blue", "most important elements (Birnbaum importance)")
    width = max(len(i.element) for i in top)
    for i in top:
        console.print(Text.assemble(f"  {i.element:<{width}}  ", (f"{i.birnbaum:.3g}", "bold")))
