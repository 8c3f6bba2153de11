"""What a component depends on: its `needs`, and what its own fields imply.

A component is up only when what it cannot work without is up. `needs` says
so explicitly; some kinds say it through their own fields, and those count
whether or not `needs` repeats them:

- a load balancer depends on every component its `routes:` send to (`to:`);
- a load balancer with a `vip:` depends on the etcd component that decides
  who holds the address (`vip.dcs`, else the topology's only etcd component);
- a DNS server depends on every component its `records:` answer with;
- a postgres or cache component depends on its etcd: the one in `needs`, else
  the topology's only etcd component (its agents keep the leader lease there);
- a postgres component depends on the quorum etcd of its group's `auto_promote` (the
  primary cluster writes only while it holds its region lease there);
- a monitor depends on the etcd it claims notifications in (`dcs`, else the
  topology's only etcd component).

`dependencies()` lists them all, each with where it is written, so that the
loader can check the names and the analysis and `up` can follow the edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from spofless.topology._kinds import (
    CacheComponent,
    DnsComponent,
    DnsRecordSpec,
    EtcdComponent,
    LoadBalancerComponent,
    PostgresComponent,
)
from spofless.topology._monitor import MonitorComponent
from spofless.topology._schema import Component

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Dependency:
    """One component another depends on, why, and where the file says so."""

    target: str
    why: str  # "needs", "route", "vip.dcs", "dns record", "etcd", "dcs", "quorum"
    path: Loc  # below components.<name>; () when implied by the topology as a whole


def dependencies(name: str, components: Mapping[str, Component]) -> list[Dependency]:
    """Every dependency of component `name`, explicit first, each target once.

    A target that is not a component is listed too, so that the loader can
    report it where it is written.
    """
    comp = components[name]
    out: list[Dependency] = [
        Dependency(dep, "needs", ("needs", j)) for j, dep in enumerate(comp.needs)
    ]
    if isinstance(comp, LoadBalancerComponent):
        for i, route in enumerate(comp.routes):
            out.append(Dependency(route.to, "route", ("routes", i, "to")))
        if comp.vip is not None:
            if comp.vip.dcs is not None:
                out.append(Dependency(comp.vip.dcs, "vip.dcs", ("vip", "dcs")))
            elif len(etcds := _etcds(components)) == 1:
                out.append(Dependency(etcds[0], "vip.dcs", ("vip",)))
    elif isinstance(comp, DnsComponent):
        for owner, record in comp.records.items():
            target = record.component if isinstance(record, DnsRecordSpec) else record
            path: Loc = ("records", owner)
            if isinstance(record, DnsRecordSpec):
                path = (*path, "component")
            out.append(Dependency(target, "dns record", path))
    elif isinstance(comp, PostgresComponent | CacheComponent):
        if isinstance(comp, PostgresComponent):
            out.extend(_region_quorums(name, comp, components))
        named = [d for d in comp.needs if isinstance(components.get(d), EtcdComponent)]
        if not named and len(etcds := _etcds(components)) == 1:
            out.append(Dependency(etcds[0], "etcd", ()))
    elif isinstance(comp, MonitorComponent):
        if comp.dcs is not None:
            out.append(Dependency(comp.dcs, "dcs", ("dcs",)))
        elif len(etcds := _etcds(components)) == 1:
            out.append(Dependency(etcds[0], "dcs", ()))
    seen: set[str] = set()
    unique = []
    for dep in out:
        if dep.target not in seen:
            seen.add(dep.target)
            unique.append(dep)
    return unique


def _region_quorums(
    name: str, comp: PostgresComponent, components: Mapping[str, Component]
) -> list[Dependency]:
    """The quorum etcd of the group's `auto_promote`: its primary cluster writes only while
    it holds its region lease there, so every cluster of the group needs it."""
    root = comp.standby_of or name
    out = []
    for other, c in components.items():
        if not isinstance(c, PostgresComponent) or c.auto_promote is None:
            continue
        if other != name and c.auto_promote.quorum not in components:
            continue  # reported where it is written
        if other == root or c.standby_of == root:
            path: Loc = ("auto_promote", "quorum") if other == name else ()
            out.append(Dependency(c.auto_promote.quorum, "quorum", path))
    return out


def _etcds(components: Mapping[str, Component]) -> list[str]:
    return [n for n, c in components.items() if isinstance(c, EtcdComponent)]
