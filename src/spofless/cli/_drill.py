"""`spofless drill`: break the running system on purpose and measure what clients saw."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from spofless.cli._root import main, topology_of

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class _DrillGroup(click.Group):
    """`spofless drill FILE ...` runs a drill; `spofless drill history FILE` shows past ones."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@main.group("drill", cls=_DrillGroup)
def drill() -> None:
    """Break the system FILE runs (`spofless up`) on purpose and measure what clients saw.

    \b
      spofless drill FILE                          prove the analysis: fail every element
                                                   alone under traffic, prediction beside
                                                   measured outcome
      spofless drill FILE --scenario NAME          a scenario of FILE's `drills:`
      spofless drill FILE --random --seed 7 --faults 20   a seeded random schedule
      spofless drill history FILE                  past drills, with trends

    Exit status: 0 every check held; 1 an assertion, expectation or prediction failed,
    the drill was aborted or the system was not whole again; 2 invalid input, nothing
    running, or the steady state not holding (nothing was broken); 130 interrupted
    (every fault taken back).
    """


_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The state dir `up` used. Default: .spofless/<file name without .yaml> next to FILE.",
)


@drill.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--scenario", "-s", default=None, help="Run this scenario of FILE's `drills:`.")
@click.option("--random", "randomized", is_flag=True, help="A randomized fault schedule.")
@click.option("--seed", type=int, default=None, help="Seed of --random (default: drawn, shown).")
@click.option(
    "--faults",
    "count",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Faults of --random.",
)
@click.option(
    "--hold",
    type=click.FloatRange(0.5, 600),
    default=8.0,
    show_default=True,
    help="Seconds each element stays failed in the default plan (longer than a failover).",
)
@click.option(
    "--only",
    multiple=True,
    help="Default plan: drill only these elements or kinds (instance, host, zone, region, "
    "host:h1, zone:east/a, web/0; repeatable).",
)
@click.option(
    "--assert",
    "asserts",
    multiple=True,
    help="A figure's bound, e.g. 'lost_writes == 0', 'rto < 5s' (repeatable).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "html"]),
    default="text",
    show_default=True,
    help="text: a live view, then a summary; json: every figure (docs/drill.md: its keys); "
    "junit: a test case per fault; html: one self-contained file with charts.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report here instead of to stdout.",
)
@_state_dir_option
def run_command(
    file: str,
    scenario: str | None,
    randomized: bool,
    seed: int | None,
    count: int,
    hold: float,
    only: tuple[str, ...],
    asserts: tuple[str, ...],
    fmt: str,
    output: Path | None,
    state_dir: Path | None,
) -> None:
    """Run a drill against the system `spofless up` started from FILE.

    `spofless drill FILE ...` is the same command (`run` may be left out).
    """
    import random as _random

    from spofless.analysis import analyze
    from spofless.drill import assertions as asrt
    from spofless.drill import history, plans, report
    from spofless.drill.errors import DrillError
    from spofless.drill.system import System
    from spofless.topology import TopologyError
    from spofless.topology._drills import drill_problems

    topology = topology_of(file)
    problems = drill_problems(topology)
    if problems:
        raise TopologyError(problems)
    if scenario and randomized:
        raise DrillError("--scenario and --random are two plans: choose one")
    if only and (scenario or randomized):
        raise DrillError(
            "--only chooses elements of the default plan: not with --scenario or --random"
        )
    checks = [asrt.parse_assertion(a) for a in asserts]
    system = System.open(topology, state_dir)
    if scenario:
        plan = plans.scenario_plan(topology, scenario, seed or 0)
        checks += asrt.expectations(plan.expect)
    elif randomized:
        seed = seed if seed is not None else _random.randrange(1 << 31)
        plan = plans.random_plan(topology, seed, count)
    else:
        spofs = [s.element for s in analyze(topology, max_order=1).spofs]
        running = [i["name"] for i in system.document()["instances"]]
        plan = plans.analysis_plan(topology, spofs, running, hold=hold, lab=system.lab is not None)
        plan = plans.only_elements(plan, only)
    if system.lab is not None:
        _enter_lab(system)
    click.echo(
        f"drill {plan.kind}"
        + (f" (seed {plan.seed})" if plan.seed is not None else "")
        + f": {len(plan.phases)} phase(s), {len(plan.traffic)} traffic stream(s)",
        err=True,
    )
    result = _run_with_progress(system, plan)
    doc = report.report_document(result, topology.name, topology.source, checks)
    if plan.kind == "analysis":
        doc["ok"] = doc["ok"] and doc["summary"]["mispredicted"] == 0
    doc["ok"] = (
        doc["ok"] and doc["after"]["whole"] and (doc["data"] is None or bool(doc["data"]["ok"]))
    )
    history.append(system.plan.state_dir, doc)
    _emit(doc, fmt, output)
    if result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0 if doc["ok"] else EXIT_FAILED)


def _enter_lab(system: Any) -> None:
    """Run the traffic from the lab's control namespace, from where every host is reached."""
    from spofless.stack._lab import enter_netns

    control = system.lab.plan.control
    if control is not None:
        enter_netns(control.netns)


def _run_with_progress(system: Any, plan: Any) -> Any:
    from rich.console import Console, Group, RenderableType
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    from spofless.drill.runner import Progress, run_drill

    console = Console(stderr=True)
    if not console.is_terminal:
        last = [""]

        def line(p: Progress) -> None:
            if p.phase != last[0]:
                last[0] = p.phase
                click.echo(
                    f"[{p.elapsed:6.1f}s] phase {p.phase_index + 1}/{p.phases}: {p.phase}", err=True
                )

        return run_drill(system, plan, line)

    with Live(console=console, auto_refresh=False, transient=True) as live:

        def show(p: Progress) -> None:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for c in ("STREAM", "REQUESTS", "ERRORS", "OK (2s)"):
                table.add_column(c)
            for name, n, errors, ok in p.streams:
                style = "green" if ok >= 0.99 else "yellow" if ok >= 0.5 else "bold red"
                table.add_row(name, str(n), str(errors), Text(f"{ok:.0%}", style))
            head = Text(
                f"{p.elapsed:6.1f}s  phase {p.phase_index + 1}/{p.phases}: {p.phase}", "bold"
            )
            active = Text("faults in place: " + (", ".join(p.active) or "none"))
            parts: list[RenderableType] = [head, active, table]
            if p.last_event:
                parts.append(Text(f"event: {p.last_event}", "dim"))
            live.update(Group(*parts), refresh=True)

        return run_drill(system, plan, show)


def _emit(doc: dict[str, Any], fmt: str, output: Path | None) -> None:
    from rich.console import Console

    from spofless.drill import report

    if fmt == "text":
        if output is None:
            wide = None if sys.stdout.isatty() else 160
            Console(width=wide, soft_wrap=wide is not None).print(report.render_text(doc))
            return
        with open(output, "w", encoding="utf-8") as f:
            Console(file=f, width=160, no_color=True).print(report.render_text(doc))
        return
    if fmt == "json":
        text = report.render_json(doc)
    elif fmt == "junit":
        text = report.render_junit(doc)
    else:
        from spofless.drill.html import render_html

        text = render_html(doc)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)


@drill.command("history")
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
@click.option("--last", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def history_command(file: str, state_dir: Path | None, last: int, as_json: bool) -> None:
    """Past drills of FILE (from the state dir's drills.sqlite), with the RTO's trend."""
    import json

    from rich.console import Console

    from spofless.drill import history
    from spofless.stack import running_plan

    plan = running_plan(topology_of(file), state_dir)
    rows = history.load(plan.state_dir, last)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no drills recorded in {plan.state_dir} yet (run `spofless drill {file}`)")
        return
    wide = None if sys.stdout.isatty() else 160
    Console(width=wide).print(history.history_table(rows))
    click.echo("RTO over these drills: " + history.sparkline([r["rto"] for r in rows]))
