"""The root command group and what every command shares.

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
            # One problem per line, each marked, so that every one stands out (and greps).
            for line in str(exc).splitlines() or [""]:
                click.echo(f"error: {line}", err=True)
            sys.exit(EXIT_INVALID)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spofless")
def main() -> None:
    """Make a system free of single points of failure, and prove it."""


def topology_of(path: str) -> Topology:
    return load_topology(Path(path))
