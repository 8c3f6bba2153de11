"""The command line: parse, build the validated topology, call one function.

Exit status everywhere: 0 success, 1 a finding (e.g. a single point of
failure), 2 invalid input or a user error (message, never a traceback).
"""

from __future__ import annotations

import contextlib
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
    # click.echo drops the colours when stdout is not a terminal.
    click.echo(render(report, fmt, color=True), nl=False)
    sys.exit(0 if report.ok else 1)


# -- stack: up / down / status / logs ----------------------------------------------

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
def up(
    file: str,
    hosts: tuple[str, ...],
    state_dir: Path | None,
    detach: bool,
    wait: bool,
    allow_spof: bool,
    timeout: float,
) -> None:
    """Start the instances FILE places on this machine and supervise them.

    Refuses a topology with a single point of failure (see `spofless check`)
    unless --allow-spof. Kinds spofless cannot run are skipped with a note.
    """
    from spofless import stack

    plan = stack.make_plan(_topology(file), state_dir, hosts)
    settings = stack.SupervisorSettings(start_timeout=timeout)
    stack.up(plan, click.echo, detach, wait, allow_spof, settings)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
def down(file: str, state_dir: Path | None) -> None:
    """Stop everything `up` started from FILE: SIGTERM, then SIGKILL after 10s."""
    from spofless import stack

    stack.down(stack.make_plan(_topology(file), state_dir), click.echo)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (key `instances`).")
def status(file: str, state_dir: Path | None, as_json: bool) -> None:
    """Show every instance of FILE on this machine: state, health, pid, ports, restarts."""
    import json

    from rich.console import Console

    from spofless import stack

    doc = stack.status(stack.make_plan(_topology(file), state_dir))
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
@click.option("--tail", "-n", "lines", type=click.IntRange(0), default=100, show_default=True)
def logs(file: str, instance: str | None, state_dir: Path | None, follow: bool, lines: int) -> None:
    """Print the logs of INSTANCE (`web` or `web/1`; default: all) of FILE."""
    from spofless import stack

    plan = stack.make_plan(_topology(file), state_dir)
    with contextlib.suppress(KeyboardInterrupt):
        stack.logs(plan, instance, follow, lines, sys.stdout)


# -- dns ---------------------------------------------------------------------------


@main.command("dns")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--component", default="dns", show_default=True, help="The `kind: dns` component to run."
)
@click.option(
    "--instance",
    "index",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Which of its instances (0-based): listens on its host's address, port + instance.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen on this port instead (0: any free port, logged). Default: from FILE.",
)
def dns_command(file: str, component: str, index: int, port: int | None) -> None:
    """Run one instance of a health-checked authoritative DNS server from FILE.

    Answers A/AAAA for the component's `records` with the addresses of the
    instances whose health checks pass (all of them when none pass), over UDP
    and TCP, until SIGTERM or SIGINT.
    """
    import logging

    from spofless import dns

    settings = dns.dns_settings(_topology(file), component, index, port=port)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    dns.run(settings)
