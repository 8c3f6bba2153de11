"""The terminal report: a verdict first, then findings grouped by severity."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from spofless.analysis._format import downtime, gain, nines, percent
from spofless.analysis._report import Report

MAX_CUT_SETS = 20
MAX_IMPORTANCE = 8
WIDTH = 100


def render_text(report: Report, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=WIDTH,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
    )
    _header(console, report)
    _spofs(console, report)
    _cut_sets(console, report)
    _components(console, report)
    _importance(console, report)
    return buf.getvalue()


def _header(console: Console, report: Report) -> None:
    title = Text.assemble(("spofless check", "bold"), " · ", (report.name, "bold cyan"))
    title.append(f"  ({report.source}, {report.elements} elements)", style="dim")
    console.print(title)
    if report.ok:
        verdict = Text("✓ no single point of failure", style="bold green")
    else:
        n = len(report.spofs)
        verdict = Text(f"✗ {n} single point{'s' if n > 1 else ''} of failure", style="bold red")
    console.print(verdict)
    line = Text("  availability ")
    line.append(percent(report.availability), style="bold")
    if not report.exact:
        line.append(f" ± {report.availability_error:.1e}", style="yellow")
    line.append(f"  ({nines(report.unavailability)})   downtime ")
    line.append(downtime(report.unavailability), style="bold")
    line.append("   exact" if report.exact else "   bounded (not exact)", style="dim")
    console.print(line)


def _section(console: Console, label: str, style: str, title: str) -> None:
    console.print()
    console.print(Text.assemble((f" {label} ", f"bold reverse {style}"), " ", (title, "bold")))


def _spofs(console: Console, report: Report) -> None:
    if not report.spofs:
        return
    _section(console, "ERROR", "red", f"single points of failure ({len(report.spofs)})")
    for s in report.spofs:
        head = Text.assemble(("  ✗ ", "red"), (s.element, "bold"))
        if s.location is not None:
            head.append(f"   {s.location}", style="dim")
        console.print(head)
        console.print(Text.assemble(("      why  ", "dim"), s.reason))
        fix = Text.assemble(("      fix  ", "dim"), s.recommendation)
        fix.append("  →  ", style="dim")
        fix.append(percent(s.availability_if_fixed), style="green")
        fix.append(f" ({gain(report.availability, s.availability_if_fixed)})", style="dim")
        console.print(fix)


def _cut_sets(console: Console, report: Report) -> None:
    sets = [
        (c, comps)
        for c, comps in zip(report.cut_sets, report.cut_set_components, strict=True)
        if len(c) > 1
    ]
    if not sets:
        return
    _section(
        console,
        "WARNING",
        "yellow",
        f"minimal cut sets of 2 to {report.max_order} elements ({len(sets)})",
    )
    for cut, comps in sets[:MAX_CUT_SETS]:
        line = Text.assemble(("  • ", "yellow"), " + ".join(cut))
        line.append(f"   takes down {', '.join(comps)}", style="dim")
        console.print(line)
    if len(sets) > MAX_CUT_SETS:
        console.print(
            Text(f"  … and {len(sets) - MAX_CUT_SETS} more (--format json lists all)", "dim")
        )


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


def _importance(console: Console, report: Report) -> None:
    top = [i for i in report.importance[:MAX_IMPORTANCE] if i.birnbaum > 0]
    if not top:
        return
    _section(console, "INFO", "blue", "most important elements (Birnbaum importance)")
    width = max(len(i.element) for i in top)
    for i in top:
        console.print(Text.assemble(f"  {i.element:<{width}}  ", (f"{i.birnbaum:.3g}", "bold")))
