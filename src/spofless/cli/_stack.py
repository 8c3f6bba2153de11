"""The whole topology: check it, and run it on this machine (up, down, status, logs)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spofless.cli._root import main, topology_of

if TYPE_CHECKING:
    from spofless.analysis import Report


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--max-order",
    type=click.IntRange(1, 4),
    default=2,
    show_default=True,
    help="Largest size of the minimal cut sets to list.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "sarif"]),
    default="text",
    show_default=True,
    help="Report format.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where restore drills are recorded (their restore time is the RTO of a design "
    "that recovers from backups). Default: .spofless/<file name without .yaml> next to FILE.",
)
def check(file: str, max_order: int, fmt: str, state_dir: Path | None) -> None:
    """Find every single point of failure of FILE and its exact availability; state the
    disaster-recovery tier, RTO and RPO each entry component's design can meet.

    With `kind: monitor` components, the alerting path (the monitors and the
    etcd they claim alerts in) is checked too: a single monitor is a single
    point of failure of the alerting path.

    Exit status: 0 with no single point of failure (serving and alerting paths) and
    every declared `objectives:` met, 1 otherwise, 2 when FILE is not a valid topology.
    """
    from spofless.analysis import analyze, render
    from spofless.analysis._rpo import Measured
    from spofless.monitor import alerting_path
    from spofless.stack._state import default_state_dir
    from spofless.topology import PostgresComponent

    topology = topology_of(file)
    where = state_dir or default_state_dir(Path(file))
    measured = {}
    for name, comp in topology.components.items():
        if not isinstance(comp, PostgresComponent) or comp.backup is None:
            continue
        from spofless.backup import latest_drill

        drill = latest_drill(where, name)
        if drill and isinstance(drill.get("rto"), int | float):
            rpo = drill.get("rpo")
            measured[name] = Measured(
                float(drill["rto"]),
                float(rpo) if isinstance(rpo, int | float) else None,
                float(drill.get("started_at") or 0),
            )
    report = analyze(topology, max_order=max_order, measured=measured)
    # The terminal's width on a terminal; piped, a fixed width that reads well in logs.
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
    # click.echo drops the colours when stdout is not a terminal.
    click.echo(render(report, fmt, color=True, width=width), nl=False)
    ok = report.ok and report.objectives_met
    alerting = alerting_path(topology)
    if alerting is not None:
        path = analyze(alerting, max_order=1)
        ok = ok and path.ok
        if fmt == "text":
            click.echo(_alerting_text(path))
        else:
            click.echo(f"alerting path: {len(path.spofs)} single point(s) of failure", err=True)
            for spof in path.spofs:
                click.echo(f"  {spof.element}: {spof.reason}", err=True)
    sys.exit(0 if ok else 1)


def _alerting_text(path: Report) -> str:
    """The alerting path's verdict, after the serving path's report."""
    if path.ok:
        return "\nalerting path (monitors and their etcd): ✓ no single point of failure"
    lines = [
        f"\nalerting path (monitors and their etcd): ✗ {len(path.spofs)} single point(s) of failure"
    ]
    lines += [f"  {s.element}  {s.reason}" for s in path.spofs]
    return "\n".join(lines)


_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where pids, state and logs live. Default: .spofless/<file name without .yaml> "
    "next to FILE. up, status, logs and down must agree on it.",
)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="Run only the instances placed on HOST (repeatable). Default: every host.",
)
@_state_dir_option
@click.option("--detach", "-d", is_flag=True, help="Run the supervisor in the background.")
@click.option(
    "--wait", is_flag=True, help="With --detach (implied): also wait until all are healthy."
)
@click.option(
    "--allow-spof", is_flag=True, help="Run a topology with a single point of failure anyway."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for dependencies, startup and (--wait) health.",
)
@click.option(
    "--lab",
    is_flag=True,
    help="Every host in its own network namespace (see `spofless lab`; Linux, root). "
    "Without root: said, and run as without --lab.",
)
def up(
    file: str,
    hosts: tuple[str, ...],
    state_dir: Path | None,
    detach: bool,
    wait: bool,
    allow_spof: bool,
    timeout: float,
    lab: bool,
) -> None:
    """Start the instances FILE places on this machine and supervise them.

    Refuses a topology with a single point of failure (see `spofless check`)
    unless --allow-spof. Kinds spofless cannot run are skipped with a note.
    With --lab, `down` also removes the lab.
    """
    from spofless import stack

    settings = stack.SupervisorSettings(start_timeout=timeout)
    topology = topology_of(file)
    for warning in topology.warnings:
        click.echo(f"warning: {warning}", err=True)
    stack.up(
        topology,
        state_dir,
        hosts,
        click.echo,
        detach=detach,
        wait=wait,
        allow_spof=allow_spof,
        settings=settings,
        lab=lab,
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
def down(file: str, state_dir: Path | None) -> None:
    """Stop everything `up` started from FILE: SIGTERM, then SIGKILL after 10s."""
    from spofless import stack

    stack.down(stack.running_plan(topology_of(file), state_dir), click.echo)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (key `instances`).")
def status(file: str, state_dir: Path | None, as_json: bool) -> None:
    """Show every instance of FILE on this machine: state, health, pid, ports, restarts."""
    import json

    from rich.console import Console

    from spofless import stack

    doc = stack.status(stack.running_plan(topology_of(file), state_dir))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        # Piped output is not cut to 80 columns: scripts grep it.
        wide = None if sys.stdout.isatty() else 250
        Console(width=wide, soft_wrap=wide is not None).print(stack.render_status(doc))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("instance", required=False)
@_state_dir_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option(
    "--tail",
    "-n",
    "lines",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="Lines to print from the end of each log first.",
)
def logs(file: str, instance: str | None, state_dir: Path | None, follow: bool, lines: int) -> None:
    """Print the logs of INSTANCE (`web` or `web/1`; default: all) of FILE."""
    from spofless import stack

    plan = stack.running_plan(topology_of(file), state_dir)
    if not any(inst.log_path.exists() for inst in plan.instances):
        click.echo(
            f"nothing is running from {file}: no logs in {plan.state_dir} "
            f"(start it with `spofless up {file}`)",
            err=True,
        )
        sys.exit(1)
    with contextlib.suppress(KeyboardInterrupt):
        stack.logs(plan, instance, follow, lines, sys.stdout)
