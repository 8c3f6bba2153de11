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


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--component", help="With FILE: the load_balancer component to run.")
@click.option("--instance", type=int, default=0, show_default=True, help="With FILE: its index.")
@click.option("--listen", help="Standalone: host:port to listen on.")
@click.option(
    "--backend", "backends", multiple=True, help="Standalone: host:port[,weight]; repeat."
)
@click.option("--mode", type=click.Choice(["http", "tcp"]), default="http", show_default=True)
@click.option(
    "--algorithm",
    type=click.Choice(
        ["round_robin", "weighted_round_robin", "least_connections", "two_choices", "hash"]
    ),
    default="round_robin",
    show_default=True,
)
@click.option(
    "--hash-key", default="source", show_default=True, help="source|path|header:N|cookie:N"
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--admin", help="Standalone: host:port of the admin API.")
@click.option("--admin-token", envvar="SPOFLESS_ADMIN_TOKEN", help="Bearer token of the admin API.")
@click.option(
    "--health",
    type=click.Choice(["tcp", "http"]),
    help="Health check type [default: http GET / (any status < 500) in http mode, else tcp].",
)
@click.option("--health-path", default="/", show_default=True)
def lb(
    file: str | None,
    component: str | None,
    instance: int,
    listen: str | None,
    backends: tuple[str, ...],
    mode: str,
    algorithm: str,
    hash_key: str,
    workers: int,
    admin: str | None,
    admin_token: str | None,
    health: str | None,
    health_path: str,
) -> None:
    """Run a load balancer: from a topology FILE, or standalone with --listen and --backend.

    \b
      spofless lb shop.yaml --component lb --instance 0
      spofless lb --listen 127.0.0.1:8080 --backend 127.0.0.1:9001 --backend 127.0.0.1:9002

    SIGHUP reloads (FILE mode re-reads the file), SIGTERM stops gracefully.
    """
    from pydantic import ValidationError

    from spofless.lb import LbConfigError, run_lb, settings_from_flags, settings_from_topology
    from spofless.topology import HealthCheck, LbOptions

    if file is not None:
        if listen or backends:
            raise LbConfigError("give either FILE or --listen/--backend, not both")
        if component is None:
            raise LbConfigError("FILE needs --component (the load_balancer to run)")
        path, comp = file, component

        def build() -> object:
            return settings_from_topology(_topology(path), comp, instance)

    else:
        if not listen:
            raise LbConfigError("give FILE --component C, or --listen and --backend")
        try:
            options = LbOptions.model_validate({"algorithm": algorithm, "hash_key": hash_key})
            check = HealthCheck(type=health, path=health_path) if health else None
        except ValidationError as exc:
            raise LbConfigError(f"invalid option: {exc.errors()[0]['msg']}") from None
        listen_ = listen

        def build() -> object:
            return settings_from_flags(
                listen=listen_,
                backends=list(backends),
                mode=mode,
                workers=workers,
                admin=admin,
                admin_token=admin_token,
                health=check,
                options=options,
            )

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = build()
    run_lb(settings, reload=build)  # type: ignore[arg-type]
