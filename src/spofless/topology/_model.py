"""The validated, resolved topology: elements with their availabilities.

Elements are the things that fail independently: `region:<r>`, `zone:<r>/<z>`,
`host:<h>` and `instance:<component>/<i>` (i from 0 in file order). Every
availability is resolved once here, with the precedence docs/design.md gives: the
element's own, else its component's (instances), else `defaults`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from spofless.topology._deps import dependencies
from spofless.topology._errors import Problem
from spofless.topology._schema import Component, Defaults

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value stands in the file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    availability: float
    address: str
    zone: str | None = None  # "<region>/<zone>"
    region: str | None = None

    @property
    def element(self) -> str:
        return f"host:{self.name}"


@dataclass(frozen=True, slots=True)
class Instance:
    component: str
    index: int
    host: str | None
    availability: float

    @property
    def element(self) -> str:
        return instance_element(self.component, self.index)

    @property
    def name(self) -> str:
        """Short name used in logs and status tables: `<component>/<index>`."""
        return f"{self.component}/{self.index}"


def instance_element(component: str, index: int) -> str:
    return f"instance:{component}/{index}"


@dataclass(frozen=True)
class Topology:
    """A checked topology. Build it with `load_topology` or `topology_from_data`."""

    name: str
    defaults: Defaults
    regions: Mapping[str, float]  # region name -> availability
    zones: Mapping[str, float]  # "<region>/<zone>" -> availability
    hosts: Mapping[str, Host]
    components: Mapping[str, Component]
    instances: Mapping[str, tuple[Instance, ...]]  # component -> its instances
    entry: tuple[str, ...]
    # The plain data the topology was built from, to derive changed topologies.
    data: Mapping[str, Any] = field(repr=False, compare=False)
    source: str = "<memory>"
    # Where each value stood in the file, keyed by its path in the data.
    locations: Mapping[Loc, Location] = field(default_factory=dict, repr=False, compare=False)
    # What is valid but probably not meant (a component no entry reaches, hosts that
    # share one address): `check` and `up` print these.
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    # -- elements -------------------------------------------------------------

    def all_instances(self) -> Iterator[Instance]:
        for instances in self.instances.values():
            yield from instances

    def elements(self) -> dict[str, float]:
        """Every element with its availability, in a stable order."""
        out: dict[str, float] = {}
        out.update((f"region:{r}", a) for r, a in self.regions.items())
        out.update((f"zone:{z}", a) for z, a in self.zones.items())
        out.update((h.element, h.availability) for h in self.hosts.values())
        out.update((i.element, i.availability) for i in self.all_instances())
        return out

    def parents(self, instance: Instance) -> list[str]:
        """The elements an instance needs besides itself: host, zone, region."""
        if instance.host is None:
            return []
        host = self.hosts[instance.host]
        out = [host.element]
        if host.zone is not None:
            out.append(f"zone:{host.zone}")
        if host.region is not None:
            out.append(f"region:{host.region}")
        return out

    def required_components(self) -> list[str]:
        """Components the system needs (entry and everything they depend on), dependencies
        first."""
        return self.dependency_order(self.entry)

    def dependencies(self, name: str) -> list[str]:
        """What component `name` cannot work without: its `needs` and what its own fields
        imply (a load balancer's routes and vip etcd, a DNS server's records, a postgres
        component's etcd); see `spofless.topology._deps`."""
        return list(self._dependencies[name])

    @cached_property
    def _dependencies(self) -> dict[str, tuple[str, ...]]:
        # Computed once: the topology is frozen.
        return {
            name: tuple(d.target for d in dependencies(name, self.components))
            for name in self.components
        }

    def cluster_group(self, component: str) -> tuple[str, ...]:
        """A postgres component's group of clusters that copy one database (`standby_of`):
        the primary cluster first, then its standby clusters in file order. A component
        without standby clusters is a group of one."""
        root = getattr(self.components[component], "standby_of", None) or component
        standbys = [n for n, c in self.components.items() if getattr(c, "standby_of", None) == root]
        return (root, *standbys)

    def dependency_order(self, roots: Iterable[str] | None = None) -> list[str]:
        """`roots` (every component by default) and their dependencies, each after them."""
        seen: dict[str, None] = {}

        def visit(name: str) -> None:
            if name in seen:
                return
            for dep in self.dependencies(name):
                visit(dep)
            seen[name] = None

        for name in self.components if roots is None else roots:
            visit(name)
        return list(seen)

    def address_of(self, instance: Instance) -> str | None:
        """`ip:port` of an instance's main port, or None when its component has no port.

        Instance i listens on `port + i`, except the instances of a load balancer with a
        `vip:`, which all listen on `port` (each on its own host)."""
        port = getattr(self.components[instance.component], "port", None)
        if port is None:
            return None
        ip = self.hosts[instance.host].address if instance.host is not None else "127.0.0.1"
        # Load balancers sharing a floating address all serve the same port (on
        # different hosts): a client of the VIP knows one port.
        shared = getattr(self.components[instance.component], "vip", None) is not None
        return f"{ip}:{port if shared else port + instance.index}"

    def location_of(self, *path: str | int) -> Location | None:
        """The file location of the value at `path`, or of its nearest parent."""
        loc: Loc = tuple(path)
        while loc:
            if loc in self.locations:
                return self.locations[loc]
            loc = loc[:-1]
        return self.locations.get((), None)

    @property
    def file(self) -> Path | None:
        return None if self.source.startswith("<") else Path(self.source)
