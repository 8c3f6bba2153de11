"""`spofless cache`: the agent of one Redis instance of a cache shard."""

from __future__ import annotations

from pathlib import Path

import click

from spofless.cli._root import main, topology_of


@main.group()
def cache() -> None:
    """The cache tier: Redis shards with automatic failover through etcd."""


@cache.command("agent")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--component", required=True, help="The cache component (shard) of FILE.")
@click.option("--instance", "index", type=click.IntRange(0), required=True, help="Its index.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where data directories go (default: .spofless/<file stem> beside FILE).",
)
def cache_agent(file: str, component: str, index: int, state_dir: str | None) -> None:
    """Run the agent of one Redis instance until SIGTERM (the stack runs this)."""
    from spofless.cache.process import agent_main

    path = Path(file).resolve()
    state = Path(state_dir) if state_dir else path.parent / ".spofless" / path.stem
    agent_main(topology_of(file), component, index, state)
