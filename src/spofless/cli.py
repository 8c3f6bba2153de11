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
