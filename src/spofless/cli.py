"""The command line: parse, build the validated topology, call one function.

Exit status everywhere: 0 success, 1 a finding (e.g. a single point of
failure), 2 invalid input or a user error (message, never a traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from spofless import __version__
from spofless.errors import SpoflessError
from spofless.topology import Topology, load_topology

EXIT_INVALID = 2


class _Group(click.Group):
    """Turns every SpoflessError into its message and exit status 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SpoflessError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spofless")
def main() -> None:
    """Make a system free of single points of failure, and prove it."""


def _topology(path: str) -> Topology:
    return load_topology(Path(path))


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
def check(file: str, max_order: int, fmt: str) -> None:
    """Find every single point of failure of FILE and its exact availability.

    Exit status: 0 with no single point of failure, 1 with at least one,
    2 when FILE is not a valid topology.
    """
    from spofless.analysis import analyze, render

    report = analyze(_topology(file), max_order=max_order)
    click.echo(render(report, fmt), nl=False)
    sys.exit(0 if report.ok else 1)


# -- spofless pg: the PostgreSQL HA agent and its operations -------------------------------


@main.group()
def pg() -> None:
    """PostgreSQL with automatic failover: the agent, switchover, pause."""


def _state_dir(file: str, state_dir: str | None) -> Path:
    from spofless.pg._topology import default_state_dir

    return Path(state_dir) if state_dir else default_state_dir(Path(file))


@pg.command("agent")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--component", required=True, help="The postgres component of FILE.")
@click.option("--instance", "index", type=click.IntRange(0), required=True, help="Its index.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where data directories go (default: .spofless/<file stem> beside FILE).",
)
def pg_agent(file: str, component: str, index: int, state_dir: str | None) -> None:
    """Run the agent of one PostgreSQL instance until SIGTERM (the stack runs this)."""
    from spofless.pg.process import agent_main

    agent_main(_topology(file), component, index, _state_dir(file, state_dir))


_component_option = click.option(
    "--component", default=None, help="The postgres component (default: the only one)."
)


@pg.command("pause")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
def pg_pause(file: str, component: str | None) -> None:
    """Turn automatic failover off (maintenance); switchover still works."""
    import asyncio

    from spofless.pg.ops import set_paused, target

    asyncio.run(set_paused(target(_topology(file), component), True))
    click.echo("paused: automatic failover is off until `spofless pg resume`")


@pg.command("resume")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
def pg_resume(file: str, component: str | None) -> None:
    """Turn automatic failover on again."""
    import asyncio

    from spofless.pg.ops import set_paused, target

    asyncio.run(set_paused(target(_topology(file), component), False))
    click.echo("resumed: automatic failover is on")


@pg.command("switchover")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option("--to", "candidate", default=None, help="The member to hand over to.")
@click.option("--wait", "bound", type=float, default=30.0, show_default=True, help="Seconds.")
def pg_switchover(file: str, component: str | None, candidate: str | None, bound: float) -> None:
    """Planned switchover: stop writes, let the candidate catch up, hand the lease over."""
    import asyncio

    from spofless.pg.ops import switchover, target

    old, new = asyncio.run(switchover(target(_topology(file), component), candidate, bound=bound))
    click.echo(f"switched over from {old} to {new}")


@pg.command("failover")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option("--to", "candidate", required=True, help="The member that takes over.")
@click.option("--wait", "bound", type=float, default=30.0, show_default=True, help="Seconds.")
def pg_failover(file: str, component: str | None, candidate: str, bound: float) -> None:
    """Manual failover: CANDIDATE takes the leadership, whoever leads now (or nobody)."""
    import asyncio

    from spofless.pg.ops import switchover, target

    old, new = asyncio.run(
        switchover(target(_topology(file), component), candidate, failover=True, bound=bound)
    )
    click.echo(f"failed over from {old or 'no leader'} to {new}")
