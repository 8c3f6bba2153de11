"""A `kind: postgres` instance of a topology as the agent's settings: one code path.

`spofless pg agent FILE --component db --instance N` and the stack runner both
build `AgentSettings` here, so an agent started by hand and one started by
`spofless up` are the same agent. Pure: reads the topology, touches nothing.

Where things go, under the state directory (the stack's, `.spofless/<file stem>`
beside the topology file by default):

    data/<component>-<i>/        the PostgreSQL data directory
    data/<component>-<i>.log     its server log
    data/<component>-<i>.wal-relay/   archive/restore requests when the agent relays them
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from spofless.dcs import DCSSettings, EtcdTls, lease_settings
from spofless.pg._agent_model import RegionSettings
from spofless.pg._osuser import resolve_os_user
from spofless.pg._region import region_prefix
from spofless.pg._server_model import PgAuth, PgTls
from spofless.pg.agent import AgentSettings
from spofless.pg.server import ServerSettings
from spofless.security import (
    SecretsError,
    ca_file,
    etcd_client_tls,
    host_cert,
    password,
    security_spec,
)
from spofless.topology import (
    CannotRunError,
    EtcdComponent,
    PostgresComponent,
    Topology,
    component_of,
    etcd_client_urls,
    etcd_component,
    instance_at,
    where,
)

if TYPE_CHECKING:
    from spofless.backup import WalRelay


def default_state_dir(topology_file: Path) -> Path:
    """`.spofless/<file stem>` next to the topology file, as the stack runner uses."""
    topology_file = topology_file.resolve()
    return topology_file.parent / ".spofless" / topology_file.stem


def member_name(component: str, index: int) -> str:
    """The member's name in etcd, in replication (application_name) and in logs."""
    return f"{component}-{index}"


def cluster_prefix(topology: Topology, component: str) -> str:
    """The etcd prefix every agent of this component shares."""
    return f"/spofless/{topology.name}/{component}"


def postgres_component(topology: Topology, component: str) -> PostgresComponent:
    comp = component_of(topology, component, PostgresComponent)
    if comp.port is None:
        raise CannotRunError(
            f"{where(topology, component)}: postgres component {component!r} needs `port` "
            "(instance i listens on port + i)"
        )
    return comp


def etcd_endpoints(topology: Topology, component: str) -> list[str]:
    """The client URLs of the etcd component `component` needs (the one in `needs`, or
    the topology's only one, as the analysis counts it)."""
    comp = postgres_component(topology, component)
    etcds = [n for n in comp.needs if isinstance(topology.components.get(n), EtcdComponent)]
    if len(etcds) > 1:
        raise CannotRunError(
            f"{topology.source}: postgres component {component!r} lists {len(etcds)} etcd "
            "components in `needs`: its agents keep the leader lease in exactly one"
        )
    name = etcd_component(topology, etcds[0] if etcds else None, (component,), "needs")
    return list(etcd_client_urls(topology, name))


def uses_wal_relay(topology: Topology, component: str) -> bool:
    """Whether the agent serves PostgreSQL's archive and restore commands itself (the WAL
    relay, spofless.backup._relay): with `backup:` but no `backup.command`, when the agent
    runs PostgreSQL as another OS user, who may not be able to run this spofless."""
    comp = postgres_component(topology, component)
    return (
        comp.backup is not None
        and comp.backup.command is None
        and resolve_os_user(comp.os_user) is not None
    )


def archive_settings(
    topology: Topology, component: str, data_dir: Path | None = None
) -> dict[str, str]:
    """With `backup:`, the settings that archive the WAL of whichever member is primary and
    let every member fetch WAL back: a replica that fell behind, and pg_rewind of a member
    whose own divergent WAL was recycled (`--restore-target-wal`). None without backups.

    Through the WAL relay of `data_dir` when `uses_wal_relay` (the agent runs it)."""
    comp = postgres_component(topology, component)
    if comp.backup is None:
        return {}
    from spofless.backup import postgres_settings, relay_dir

    relay = (
        relay_dir(data_dir)
        if data_dir is not None and uses_wal_relay(topology, component)
        else None
    )
    return postgres_settings(
        Path(topology.source), component, comp.backup, standby=True, relay=relay
    )


def wal_relay(topology: Topology, component: str, index: int, state_dir: Path) -> WalRelay | None:
    """The WAL relay instance `index`'s agent serves, not started; None when not needed."""
    if not uses_wal_relay(topology, component):
        return None
    from spofless.backup import WalRelay, backup_config

    comp = postgres_component(topology, component)
    config = backup_config(topology, component)
    data_dir = state_dir.resolve() / "data" / member_name(component, index)
    return WalRelay(
        config.stores, data_dir, resolve_os_user(comp.os_user), parallel=config.spec.parallel
    )


def _address(topology: Topology, host: str | None) -> str:
    return topology.hosts[host].address if host is not None else "127.0.0.1"


def pg_auth(topology: Topology, component: str, index: int, data_dir: Path) -> PgAuth:
    """Who may connect to instance `index`, with which passwords and certificate: the
    other members' hosts (replication, pg_rewind, the agents), the hosts of every
    component that needs this one, and the networks in `allow` (spofless.pg._config)."""
    comp = postgres_component(topology, component)
    instances = topology.instances[component]
    inst = instances[index]
    peers = tuple(_address(topology, i.host) for i in instances if i.index != index)
    # The members of the other clusters of its group replicate and rewind from it.
    peers += tuple(
        _address(topology, i.host)
        for other in topology.cluster_group(component)
        if other != component
        for i in topology.instances[other]
    )
    clients = [
        _address(topology, i.host)
        for other in topology.components
        if component in topology.dependencies(other)
        for i in topology.instances[other]
    ]
    try:
        tls = None
        if security_spec(topology).tls:
            cert, key = host_cert(topology, inst.host)
            tls = PgTls(cert=cert, key=key, ca=ca_file(topology))
        digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
        return PgAuth(
            superuser_password=SecretStr(password(topology, component, "superuser")),
            replication_password=SecretStr(password(topology, component, "replication")),
            rewind_password=SecretStr(password(topology, component, "rewind")),
            peers=peers,
            clients=(*clients, *comp.allow),
            # Short, whatever the state dir: a socket path must fit in 107 bytes.
            socket_dir=Path(tempfile.gettempdir()) / f"spofless-{digest}",
            passfile=data_dir.with_name(data_dir.name + ".pgpass"),
            tls=tls,
        )
    except SecretsError as exc:
        raise CannotRunError(str(exc)) from None


def etcd_tls(topology: Topology) -> EtcdTls | None:
    """The client certificate the agents (and `spofless pg`) present to etcd, with TLS on."""
    try:
        return etcd_client_tls(topology)
    except SecretsError as exc:
        raise CannotRunError(str(exc)) from None


def dcs_settings(ttl: int, loop_wait: float, tls: EtcdTls | None = None) -> DCSSettings:
    """Lease timings from the component's ttl and loop_wait (spofless.dcs.lease_settings)."""
    try:
        return lease_settings(ttl, loop_wait, tls)
    except ValueError as exc:
        raise CannotRunError(str(exc)) from None


def cluster_peers(topology: Topology, component: str) -> dict[str, tuple[tuple[str, int], ...]]:
    """The other clusters of `component`'s group (`standby_of`), each with its members'
    (host address, SQL port) in instance order: the read-write route to follow."""
    out = {}
    for other in topology.cluster_group(component):
        if other == component:
            continue
        comp = postgres_component(topology, other)
        assert comp.port is not None
        out[other] = tuple(
            (_address(topology, i.host), comp.port + i.index) for i in topology.instances[other]
        )
    return out


def region_settings(topology: Topology, component: str) -> RegionSettings | None:
    """The region lease of `component`'s group (`auto_promote` on one of its clusters; the
    loader checked they agree), None without. Every cluster of the group holds it while
    it is primary; only those with `auto_promote` take it over as a standby."""
    group = topology.cluster_group(component)
    specs = [
        c.auto_promote
        for n in group
        if isinstance(c := topology.components[n], PostgresComponent) and c.auto_promote
    ]
    if not specs or len(group) < 2:
        return None
    spec = specs[0]
    own = postgres_component(topology, component).auto_promote is not None
    return RegionSettings(
        endpoints=tuple(etcd_client_urls(topology, spec.quorum)),
        prefix=region_prefix(topology.name, group[0]),
        ttl=spec.ttl,
        auto_promote=own,
    )


def agent_settings(
    topology: Topology, component: str, index: int, state_dir: Path
) -> AgentSettings:
    """The settings of instance `index` of postgres component `component`."""
    comp = postgres_component(topology, component)
    inst = instance_at(topology, component, index)
    host = topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1"
    assert comp.port is not None
    name = member_name(component, index)
    data_dir = state_dir.resolve() / "data" / name
    server = ServerSettings(
        name=name,
        data_dir=data_dir,
        port=comp.port + index,
        host=host,
        os_user=comp.os_user,
        auth=pg_auth(topology, component, index, data_dir),
        parameters=archive_settings(topology, component, data_dir),
    )
    return AgentSettings(
        prefix=cluster_prefix(topology, component),
        server=server,
        api_host=host,
        api_port=comp.api_port + index if comp.api_port is not None else 0,
        synchronous=comp.synchronous,
        strict=comp.strict,
        maximum_lag_on_failover=comp.maximum_lag_on_failover,
        allow_reclone=comp.allow_reclone,
        loop_wait=comp.loop_wait,
        dcs=dcs_settings(comp.ttl, comp.loop_wait, etcd_tls(topology)),
        cluster=component,
        standby_of=comp.standby_of,
        peers=cluster_peers(topology, component),
        peer_etcd={
            p: (tuple(etcd_endpoints(topology, p)), cluster_prefix(topology, p))
            for p in topology.cluster_group(component)
            if p != component
        },
        region=region_settings(topology, component),
        backup_state_dir=state_dir.resolve() if comp.backup is not None else None,
    )
