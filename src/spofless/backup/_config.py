"""From the topology's `backup:` section to the stores and sources the commands use."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spofless.backup._codec import Codec, load_key
from spofless.backup._errors import BackupError
from spofless.backup._repo import FsRepository, Repository
from spofless.backup._store import Store
from spofless.topology import PostgresComponent, Topology
from spofless.topology._backup import BackupSpec, FsRepositorySpec, RepositorySpec


@dataclass(frozen=True)
class Source:
    """One instance a base backup may copy from (it must run on this machine)."""

    name: str
    host: str
    port: int
    # Added to the connection: the superuser's password and TLS settings from the
    # topology's secrets (spofless.security), when it has them.
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BackupConfig:
    component: str
    spec: BackupSpec
    stores: tuple[Store, ...]
    sources: tuple[Source, ...]
    os_user: str | None
    topology_file: Path | None


def backup_component(topology: Topology, component: str | None) -> tuple[str, BackupSpec]:
    """The postgres component with a `backup:` section (`component`, or the only one)."""
    found = {
        name: comp.backup
        for name, comp in topology.components.items()
        if isinstance(comp, PostgresComponent) and comp.backup is not None
    }
    if component is None:
        if len(found) != 1:
            raise BackupError(
                f"{topology.source}: {len(found)} postgres components have a `backup:` section"
                + (f" ({', '.join(found)}): name one with --component" if found else "")
            )
        component = next(iter(found))
    if component not in found:
        raise BackupError(
            f"{topology.source}: component {component!r} is not a postgres component with a "
            f"`backup:` section (those with one: {', '.join(found) or 'none'})"
        )
    return component, found[component]


def _client_params(topology: Topology, component: str) -> dict[str, str]:
    """The topology's secrets for connecting as the superuser; none when it has none
    (a server that trusts local connections)."""
    from spofless.security import SecretsError, client_params

    try:
        return client_params(topology, component)
    except SecretsError:
        return {}


def make_repository(spec: RepositorySpec, base: Path | None = None) -> Repository:
    """The repository `spec` names; a relative fs path is relative to `base` (the
    topology file's directory)."""
    if isinstance(spec, FsRepositorySpec):
        path = Path(spec.path)
        if not path.is_absolute():
            if base is None:
                raise BackupError(
                    f"repository path {spec.path!r} is relative and there is no topology "
                    "file to be relative to: give an absolute path"
                )
            path = base / path
        return FsRepository(str(path))
    from spofless.backup._s3 import S3Repository

    return S3Repository(
        spec.bucket,
        prefix=spec.prefix,
        endpoint=spec.endpoint,
        region=spec.region,
        timeout=spec.timeout,
    )


def backup_config(
    topology: Topology, component: str | None = None, *, connect: bool = True
) -> BackupConfig:
    """Stores (key loaded, KeyFileError when missing) and sources of one component.

    `connect` False: the sources carry no credentials (they are not connected to:
    restore, archive-wal, restore-wal, list, verify, expire), which spares loading
    spofless.security (a fifth of such a command's start-up)."""
    name, spec = backup_component(topology, component)
    key = load_key(spec.encryption.key_file) if spec.encryption else None
    level = spec.compression.level if spec.compression.type == "zstd" else None
    codec = Codec(level, key)
    base = topology.file.resolve().parent if topology.file is not None else None
    stores = tuple(Store(make_repository(r, base), codec, name) for r in spec.repositories)
    comp = topology.components[name]
    assert isinstance(comp, PostgresComponent)
    if comp.port is None:
        raise BackupError(
            f"{topology.source}: postgres component {name!r} needs `port` to be backed up "
            "(instance i listens on port + i)"
        )
    params = tuple(sorted(_client_params(topology, name).items())) if connect else ()
    sources = tuple(
        Source(
            inst.name,
            topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1",
            comp.port + inst.index,
            params,
        )
        for inst in topology.instances[name]
    )
    return BackupConfig(name, spec, stores, sources, comp.os_user, topology.file)


def spofless_argv(command: Sequence[str] | None = None) -> list[str]:
    """How PostgreSQL runs spofless: `backup.command`, else this interpreter `-m spofless`."""
    return list(command) if command else [sys.executable, "-m", "spofless"]


def archive_command(
    topology_file: Path, component: str, command: Sequence[str] | None = None
) -> str:
    """The archive_command that archives into every repository of `component`.

    `command` is the component's `backup.command` (how PostgreSQL's OS user runs spofless).
    """
    argv = [*spofless_argv(command), "backup", "archive-wal", str(topology_file.resolve())]
    return shlex.join([*argv, "--component", component]) + " %p %f"


def restore_command(
    topology_file: Path,
    component: str,
    spool: Path | None = None,
    command: Sequence[str] | None = None,
    *,
    strict: bool = False,
) -> str:
    """The restore_command that fetches from the first repository holding the file.

    `strict` (for a restore) stops recovery on any error but a missing file; without it
    (a standby) errors count as "not archived" and the standby streams instead."""
    argv = [*spofless_argv(command), "backup", "restore-wal", str(topology_file.resolve())]
    argv += ["--component", component]
    if spool is not None:
        argv += ["--spool", str(spool)]
    if strict:
        argv.append("--strict")
    return shlex.join(argv) + " %f %p"


def postgres_settings(
    topology_file: Path,
    component: str,
    spec: BackupSpec,
    *,
    standby: bool = False,
    relay: Path | None = None,
) -> dict[str, str]:
    """The PostgreSQL settings that archive `component`'s WAL (for the pg agent to set).

    `standby`: also the restore_command a replica uses to catch up from the archive.
    `relay`: the WAL relay directory (spofless.backup._relay) to go through when
    PostgreSQL's OS user cannot run spofless itself; `backup.command`, when set, wins.
    """
    if relay is not None and spec.command is None:
        from spofless.backup._relay import relay_commands

        archive, restore = relay_commands(relay)
    else:
        archive = archive_command(topology_file, component, spec.command)
        restore = restore_command(topology_file, component, None, spec.command)
    out = {"archive_mode": "on", "archive_command": archive}
    if standby:
        out["restore_command"] = restore
    return out
