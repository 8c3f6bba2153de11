"""`spofless pg`: the PostgreSQL HA agent and its operations."""

from __future__ import annotations

from pathlib import Path

import click

from spofless.cli._root import main, topology_of


@main.group()
def pg() -> None:
    """PostgreSQL with automatic failover: the agent, switchover, failover, pause, rejoin,
    and promoting a standby cluster in another region."""


def _state_dir(file: str, state_dir: str | None) -> Path:
    from spofless.pg import default_state_dir

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
    """Run the agent of one PostgreSQL instance until SIGTERM (the stack runs this).

    Run as root with `backup:`, it also serves PostgreSQL's archive and restore commands
    (the WAL relay) unless `backup.command` says how PostgreSQL's OS user runs spofless.
    """
    from spofless.pg import wal_relay
    from spofless.pg.process import agent_main

    topology, where = topology_of(file), _state_dir(file, state_dir)
    relay = wal_relay(topology, component, index, where)
    if relay is not None:
        relay.start()
    try:
        agent_main(topology, component, index, where)
    finally:
        if relay is not None:
            relay.stop()


_component_option = click.option(
    "--component", default=None, help="The postgres component (default: the only one)."
)
_wait_option = click.option(
    "--wait",
    "bound",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the new primary; the request is withdrawn after that.",
)


@pg.command("pause")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
def pg_pause(file: str, component: str | None) -> None:
    """Turn automatic failover off (maintenance); switchover still works."""
    _set_paused(file, component, True)
    click.echo("paused: automatic failover is off until `spofless pg resume`")


@pg.command("resume")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
def pg_resume(file: str, component: str | None) -> None:
    """Turn automatic failover on again."""
    _set_paused(file, component, False)
    click.echo("resumed: automatic failover is on")


def _set_paused(file: str, component: str | None, paused: bool) -> None:
    import asyncio

    from spofless.pg.ops import set_paused, target

    asyncio.run(set_paused(target(topology_of(file), component), paused))


@pg.command("switchover")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option(
    "--to",
    "candidate",
    default=None,
    help="The member to hand over to (db-1 or db/1). Default: the best replica.",
)
@_wait_option
def pg_switchover(file: str, component: str | None, candidate: str | None, bound: float) -> None:
    """Planned switchover: writes pause while the member named by --to catches up, then it
    takes the lease; no acknowledged commit is lost."""
    import asyncio

    from spofless.pg.ops import switchover, target

    old, new = asyncio.run(switchover(target(topology_of(file), component), candidate, bound=bound))
    click.echo(f"switched over from {old} to {new}")


@pg.command("failover")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option("--to", "candidate", required=True, help="The member that takes over (db-1 or db/1).")
@_wait_option
def pg_failover(file: str, component: str | None, candidate: str, bound: float) -> None:
    """Manual failover: the member named by --to takes the leadership, whoever leads now
    (or nobody)."""
    import asyncio

    from spofless.pg.ops import switchover, target

    old, new = asyncio.run(
        switchover(target(topology_of(file), component), candidate, failover=True, bound=bound)
    )
    click.echo(f"failed over from {old or 'no leader'} to {new}")


@pg.command("rejoin")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option("--member", required=True, help="The member kept out (db-0 or db/0).")
@click.option(
    "--discard",
    is_flag=True,
    help="Required: its divergent WAL (see `status`) is given up; it is rewound or re-cloned.",
)
def pg_rejoin(file: str, component: str | None, member: str, discard: bool) -> None:
    """Let a member kept out after a degraded term discard its divergent WAL and rejoin.

    The agent keeps such a member out because that WAL may hold commits a client saw
    acknowledged; save them first (the member's `status` names the LSN range), then
    run this. A re-clone keeps the old data directory aside; nothing is deleted.
    """
    import asyncio

    from spofless.pg.ops import allow_discard, member_of, target

    if not discard:
        raise click.UsageError("say --discard: the member's divergent WAL will be given up")
    t = target(topology_of(file), component)
    name = member_of(t, member)
    asyncio.run(allow_discard(t, name))
    click.echo(f"{name} may discard its divergent WAL: it rejoins on its next loop")


@pg.command("promote-region")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--region", required=True, help="The region whose standby cluster takes over.")
@click.option(
    "--component",
    default=None,
    help="The standby cluster to promote when the region holds several.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Promote even when the primary cluster's etcd cannot be reached (it is not fenced).",
)
@_wait_option
@click.option(
    "--catch-up",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds the standby has to receive the old primary's last WAL byte once fenced.",
)
def pg_promote_region(
    file: str, region: str, component: str | None, force: bool, bound: float, catch_up: float
) -> None:
    """Make the standby cluster in REGION the primary cluster: the old primary cluster is
    fenced first (no member accepts writes) and, when it can be reached, the standby must
    hold its last WAL byte before it is promoted (no lost write). Refused without --force
    when the old primary cluster cannot be reached. The old cluster then follows the new
    one (pg_rewind where needed); promote its region again to fail back. With
    auto_promote in the group, the quorum etcd's region owner moves too, and the command
    is refused (even with --force) when that quorum cannot be reached."""
    import asyncio

    from spofless.pg.region import promote_region

    report = asyncio.run(
        promote_region(
            topology_of(file),
            region,
            component=component,
            force=force,
            bound=bound,
            catch_up=catch_up,
        )
    )
    for line in report.lines():
        click.echo(line)
