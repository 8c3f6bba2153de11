"""One cache agent's settings, built from the topology (the only way it starts)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from spofless.dcs import DCSSettings, EtcdTls, lease_settings
from spofless.security import etcd_client_tls
from spofless.topology import (
    CacheComponent,
    CannotRunError,
    EtcdComponent,
    Topology,
    component_of,
    etcd_client_urls,
    etcd_component,
    instance_at,
    where,
)

# The holder assumes its lease lost this long before etcd could expire it: time to
# fence Redis (one CONFIG SET, milliseconds) plus clock-rate drift.
# min-replicas-to-write while fenced: more replicas than any shard has, so a fenced
# primary answers every write with NOREPLICAS and still serves reads.
FENCED_MIN_REPLICAS = 1000


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Everything one cache agent needs to run."""

    component: str
    index: int
    host: str  # where Redis and the API listen
    port: int  # Redis
    api_port: int
    data_dir: Path
    prefix: str  # the shard's etcd prefix: <prefix>/leader, <prefix>/members/<name>
    dcs: DCSSettings
    loop_wait: float = 0.5
    min_replicas_to_write: int = 0
    maxmemory: str | None = None
    redis_server: str = "redis-server"

    @property
    def name(self) -> str:
        return f"{self.component}-{self.index}"


def shard_prefix(topology: Topology, component: str) -> str:
    """The etcd prefix the agents of cache component `component` share."""
    return f"/spofless/{topology.name}/cache/{component}"


def dcs_settings(ttl: int, loop_wait: float, tls: EtcdTls | None = None) -> DCSSettings:
    """Lease timings from the shard's ttl and loop_wait (spofless.dcs.lease_settings)."""
    try:
        return lease_settings(ttl, loop_wait, tls)
    except ValueError as exc:
        raise CannotRunError(str(exc)) from None


def cache_settings(
    topology: Topology, component: str, index: int, state_dir: Path
) -> CacheSettings:
    """The settings of instance `index` of cache component `component`; CannotRunError
    naming file:line when the component lacks what running it needs."""
    comp = component_of(topology, component, CacheComponent)
    inst = instance_at(topology, component, index)
    if comp.port is None or comp.api_port is None:
        raise CannotRunError(
            f"{where(topology, component)}: {component} needs `port` (Redis) and `api_port` "
            "(its agents' API) to be run"
        )
    server = shutil.which("redis-server")
    if server is None:
        raise CannotRunError(
            "redis-server not found: install Debian's redis-server (scripts/system-deps.sh)"
        )
    host = topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1"
    return CacheSettings(
        component=component,
        index=index,
        host=host,
        port=comp.port + index,
        api_port=comp.api_port + index,
        data_dir=state_dir.resolve() / "data" / f"{component}-{index}",
        prefix=shard_prefix(topology, component),
        # With TLS on (the default) etcd requires the topology's client certificate.
        dcs=dcs_settings(comp.ttl, comp.loop_wait, etcd_client_tls(topology)),
        loop_wait=comp.loop_wait,
        min_replicas_to_write=comp.min_replicas_to_write,
        maxmemory=comp.maxmemory,
        redis_server=server,
    )


def etcd_endpoints(topology: Topology, component: str) -> list[str]:
    """The client URLs of the etcd the shard's agents keep their lease in (the one in
    `needs`, else the topology's only one, as the analysis counts it)."""
    comp = component_of(topology, component, CacheComponent)
    named = [n for n in comp.needs if isinstance(topology.components.get(n), EtcdComponent)]
    name = etcd_component(topology, named[0] if named else None, (component,), "needs")
    return list(etcd_client_urls(topology, name))
