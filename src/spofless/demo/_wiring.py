"""The demo app's database and cache, found through the topology file `up` names.

    record_database(file, component, timeout)   RecordDatabase over spofless.client.Database:
                                                members through the topology's etcd,
                                                credentials from its secrets
    cache_tier(file, component)                 CacheTier over the instances of a load
                                                balancer in mode redis, the one on this
                                                instance's host first

This instance is named by SPOFLESS_COMPONENT and SPOFLESS_INSTANCE (set by `up`).
Errors are ValueError with a message saying what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

from spofless.client import Database
from spofless.demo._cache import CacheTier
from spofless.demo._records import RecordDatabase
from spofless.errors import SpoflessError
from spofless.topology import LoadBalancerComponent, PostgresComponent, Topology, load_topology


def _load(file: Path) -> Topology:
    try:
        return load_topology(file)
    except (SpoflessError, OSError) as exc:
        raise ValueError(f"{file}: {exc}") from None


def record_database(file: Path, component: str, timeout: float) -> RecordDatabase:
    topology = _load(file)
    if not isinstance(topology.components.get(component), PostgresComponent):
        raise ValueError(f"--db {component}: {file} has no postgres component {component!r}")
    try:
        db = Database.from_topology(
            file, component, failover_timeout=timeout, connect_timeout=1.0, pool_size=8
        )
    except (SpoflessError, OSError) as exc:
        raise ValueError(f"--db {component}: {exc}") from None
    return RecordDatabase(db)


def cache_tier(file: Path, component: str) -> CacheTier:
    topology = _load(file)
    comp = topology.components.get(component)
    if not isinstance(comp, LoadBalancerComponent) or comp.mode != "redis":
        raise ValueError(
            f"--cache {component}: {file} has no load balancer in mode redis named {component!r}"
        )
    instances = topology.instances[component]
    mine = _my_host(topology)
    # Own host first (no network hop), then the others starting at a different one for
    # each app instance, so that the app servers do not all fall back onto one.
    start = int(os.environ.get("SPOFLESS_INSTANCE", "0") or 0)
    turn = start % len(instances)
    ordered = sorted(
        instances[turn:] + instances[:turn], key=lambda i: mine is None or i.host != mine
    )
    addresses = []
    for inst in ordered:
        address = topology.address_of(inst)
        assert address is not None  # a load balancer has a port
        host, _, port = address.rpartition(":")
        addresses.append((host, int(port)))
    return CacheTier(addresses)


def _my_host(topology: Topology) -> str | None:
    component = os.environ.get("SPOFLESS_COMPONENT")
    index = os.environ.get("SPOFLESS_INSTANCE", "")
    if component is None or component not in topology.instances or not index.isdigit():
        return None
    instances = topology.instances[component]
    return instances[int(index)].host if int(index) < len(instances) else None
