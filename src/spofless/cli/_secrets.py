"""`spofless secrets`: the passwords and certificates of a topology, kept out of its file."""

from __future__ import annotations

import click

from spofless.cli._root import main, topology_of


@main.group()
def secrets() -> None:
    """Passwords and certificates of a topology, kept out of its file (docs/secrets.md)."""


@secrets.command("init")
@click.argument("file", type=click.Path(dir_okay=False))
def secrets_init(file: str) -> None:
    """Make FILE's missing secrets: a CA, host and client certificates, and the
    PostgreSQL passwords (superuser, replication, rewind), every file 0600.

    Nothing that exists is changed. Copy the directory to every machine that runs a
    part of FILE (the CA key only where certificates may be issued): where it is a
    copy without ca.key, nothing is made.
    """
    from spofless.security import init_secrets, secrets_dir

    topology = topology_of(file)
    made = init_secrets(topology)
    where = secrets_dir(topology)
    if made:
        click.echo(f"made {len(made)} secrets in {where}:")
        for path in made:
            click.echo(f"  {path.relative_to(where)}")
    elif not (where / "ca.key").exists():
        click.echo(
            f"{where} is a copy (no ca.key): nothing is made here; make what is missing "
            "where ca.key is and copy it"
        )
    else:
        click.echo(f"every secret of {topology.name} is already in {where}")
