"""`spofless restore`: a backup into a new data directory, or as a new cluster."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from spofless.cli._backup import _component, _config, _pick, _progress_printer, _repo
from spofless.cli._root import main, topology_of


def _members_on(file: str, component: str, hosts: tuple[str, ...]) -> list[int]:
    """The indexes of `component`'s members placed on `hosts` (as `up --host` picks them)."""
    topology = topology_of(file)
    for h in hosts:
        if h not in topology.hosts:
            known = ", ".join(topology.hosts) or "none"
            raise click.BadParameter(
                f"no such host in {file} (hosts: {known})", param_hint=f"--host {h}"
            )
    return [i.index for i in topology.instances[component] if i.host in hosts]


def _parse_time(value: str) -> float:
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time", param_hint="--target-time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


@main.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@_repo
@click.option(
    "--target",
    type=click.Choice(["latest", "immediate"]),
    default=None,
    help="latest: all archived WAL; immediate: the backup's end only.",
)
@click.option("--target-time", default=None, help="ISO 8601 time (UTC unless it says).")
@click.option("--target-lsn", default=None, help="An LSN such as 0/3000028.")
@click.option("--target-name", default=None, help="A restore point (pg_create_restore_point).")
@click.option("--timeline", type=click.IntRange(1), default=None, help="Default: the latest.")
@click.option("--to", "to", type=click.Path(file_okay=False), help="New data directory.")
@click.option(
    "--as-cluster",
    is_flag=True,
    help="Restore every member of the component (the stack's data directories), recovered "
    "and stopped: `spofless up` then starts the new cluster.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="With --as-cluster: the stack's state directory (default: .spofless/<file stem>).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="With --as-cluster: only the members placed on HOST (repeatable), as `up --host` "
    "runs them; run it on every machine. Member 0's machine restores it; the others mark "
    "their members to clone it once it runs.",
)
@click.option(
    "--tablespace-map",
    "tablespace_map",
    multiple=True,
    metavar="OID=DIR",
    help="Restore tablespace OID into DIR instead of where it was (repeatable; the error "
    "for a directory in use names the backup's tablespaces).",
)
@click.option("--no-archive", is_flag=True, help="Set archive_mode off in the restored copy.")
def restore_cmd(
    file: str,
    component: str | None,
    repo: int,
    target: str | None,
    target_time: str | None,
    target_lsn: str | None,
    target_name: str | None,
    timeline: int | None,
    to: str | None,
    as_cluster: bool,
    state_dir: str | None,
    hosts: tuple[str, ...],
    tablespace_map: tuple[str, ...],
    no_archive: bool,
) -> None:
    """Restore a backup into a new data directory, set to replay WAL to the target and promote.

    The WAL replay needs is fetched with the files (every segment archived by then), so
    the restored directory starts without spofless, the key or the repository.

    \b
      spofless restore shop.yaml --target latest --to /srv/pg/restored
      spofless restore shop.yaml --target-time '2026-12-04 21:00:00' --to /srv/pg/restored
      spofless restore shop.yaml --target latest --as-cluster    (then: spofless up shop.yaml)
      spofless restore shop.yaml --target latest --as-cluster --host db1   (on each machine,
                                                   then: spofless up shop.yaml --host db1)
    """
    import os
    import pwd

    from spofless.backup import Target, restore
    from spofless.backup.plan import parse_lsn

    given = [x for x in (target, target_time, target_lsn, target_name) if x is not None]
    if len(given) > 1:
        raise click.UsageError("give one of --target, --target-time, --target-lsn, --target-name")
    if target_time is not None:
        tgt = Target("time", time=_parse_time(target_time), timeline=timeline)
    elif target_lsn is not None:
        try:
            tgt = Target("lsn", lsn=parse_lsn(target_lsn), timeline=timeline)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--target-lsn") from None
    elif target_name is not None:
        tgt = Target("name", name=target_name, timeline=timeline)
    else:
        tgt = Target("immediate" if target == "immediate" else "latest", timeline=timeline)
    if (to is None) == (not as_cluster):
        raise click.UsageError("give one of --to DIR and --as-cluster")
    if hosts and not as_cluster:
        raise click.UsageError("--host goes with --as-cluster")
    spaces: dict[str, Path] = {}
    for item in tablespace_map:
        oid, sep, into = item.partition("=")
        if not sep or not oid.isdigit() or not into:
            raise click.BadParameter(
                f"{item!r} is not OID=DIR (e.g. 16385=/srv/pg/space)", param_hint="--tablespace-map"
            )
        spaces[oid] = Path(into).absolute()
    cfg = _config(file, component)
    if as_cluster:
        from spofless.backup import restore_as_cluster
        from spofless.pg import default_state_dir

        here = _members_on(file, cfg.component, hosts) if hosts else None
        where = Path(state_dir) if state_dir else default_state_dir(Path(file))
        done = restore_as_cluster(
            cfg, _pick(cfg, repo), tgt, where, here=here, tablespace_map=spaces
        )
        if done.members:
            click.echo(
                f"restored backup {done.label} to {tgt.kind} as a new cluster of "
                f"{cfg.component} (timeline {done.timeline}) into {len(done.members)} members "
                f"under {done.members[0].parent}; `spofless up {file}"
                + "".join(f" --host {h}" for h in hosts)
                + "` starts it"
            )
        for mark in done.marked:
            click.echo(
                f"{mark.name.removesuffix('.clone-only')} marked to clone the restored member 0 "
                f"({mark}): member 0's machine restores it (`restore --as-cluster --host` "
                "there); `spofless up` here starts the clone once it runs"
            )
        if not done.members and not done.marked:
            click.echo(f"no member of {cfg.component} on {', '.join(hosts)}: nothing to do")
        return
    assert to is not None
    dest = Path(to).resolve()
    owner = pwd.getpwnam(cfg.os_user or "postgres") if os.geteuid() == 0 else None
    m = restore(
        _pick(cfg, repo),
        tgt,
        dest,
        parallel=cfg.spec.parallel,
        owner=owner,
        progress=_progress_printer(),
        archive=not no_archive,
        tablespace_map=spaces,
    )
    click.echo(
        f"restored backup {m.label} into {dest}; its first start replays WAL to the target "
        f"({tgt.kind}) and promotes"
    )
