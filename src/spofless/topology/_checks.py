"""Checks across fields of a topology: references, dependency cycles, port layouts, warnings.

Each check reports through a callback `(path, message)`, so that the loader
places every problem at its file:line and reports them all at once. The
warnings are for what is valid but probably not meant.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spofless.topology._deps import Dependency, dependencies
from spofless.topology._kinds import (
    DnsComponent,
    EtcdComponent,
    LoadBalancerComponent,
    PostgresComponent,
)
from spofless.topology._messages import suggest
from spofless.topology._model import Host, Instance
from spofless.topology._schema import Component

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]

# The ports of a component's instance i: `<field> + i` for each of these fields.
PORT_FIELDS = ("port", "peer_port", "api_port", "admin_port")


def check_references(
    components: Mapping[str, Component],
    names: Collection[str],
    regions: Collection[str],
    report: Report,
) -> None:
    """Every component a dependency names exists; a DNS server's `regions` exist.

    `components` are the components that passed the schema, `names` every
    component name in the file (one that failed its schema is not unknown).
    """
    for cname, comp in components.items():
        for dep in dependencies(cname, components):
            where: Loc = ("components", cname, *dep.path)
            if dep.target not in names:
                report(where, f"unknown component '{dep.target}'{suggest(dep.target, names)}")
            elif dep.why in ("vip.dcs", "dcs", "quorum") and dep.target in components:
                target = components[dep.target]
                if not isinstance(target, EtcdComponent):
                    report(where, f"'{dep.target}' is of kind {target.kind}, not an etcd component")
        if isinstance(comp, DnsComponent):
            for region in comp.regions:
                if region in regions:
                    continue
                hint = suggest(region, regions) if regions else " (the file defines no regions)"
                report(("components", cname, "regions", region), f"unknown region '{region}'{hint}")


def check_standby_clusters(
    components: Mapping[str, Component], names: Collection[str], report: Report
) -> None:
    """`standby_of` names another postgres component, which is a primary cluster itself:
    a standby cluster follows its group's primary cluster, never another standby."""
    for cname, comp in components.items():
        if not isinstance(comp, PostgresComponent) or comp.standby_of is None:
            continue
        where: Loc = ("components", cname, "standby_of")
        target = comp.standby_of
        if target == cname:
            report(where, "a cluster cannot be a standby cluster of itself")
        elif target not in names:
            report(where, f"unknown component '{target}'{suggest(target, names)}")
        elif target not in components:
            continue  # invalid itself: reported where it is written
        elif not isinstance(other := components[target], PostgresComponent):
            report(where, f"'{target}' is of kind {other.kind}, not a postgres component")
        elif other.standby_of is not None:
            report(
                where,
                f"'{target}' is itself a standby cluster (of '{other.standby_of}'): a standby "
                f"cluster follows its group's primary cluster; write standby_of: "
                f"{other.standby_of}",
            )


def check_auto_promote(
    hosts: Mapping[str, Host],
    components: Mapping[str, Component],
    instances: Mapping[str, Sequence[Instance]],
    report: Report,
) -> None:
    """`auto_promote` is on a cluster of a group (`standby_of`); its `quorum` is an etcd
    component whose members are in three regions or more, none holding a majority (the
    loss of any one region leaves a majority); every cluster of the group that has it names
    the same quorum and ttl; the ttl is at least twice each cluster's own ttl."""
    for cname, comp in components.items():
        if not isinstance(comp, PostgresComponent) or comp.auto_promote is None:
            continue
        spec = comp.auto_promote
        where: Loc = ("components", cname, "auto_promote")
        root = comp.standby_of or cname
        group = [
            n
            for n, c in components.items()
            if isinstance(c, PostgresComponent) and (n == root or c.standby_of == root)
        ]
        if len(group) < 2:
            report(
                where,
                f"{cname} has no standby cluster and is none (standby_of): automatic "
                "promotion is between the clusters of a group",
            )
            continue
        for other in group:
            oc = components[other]
            assert isinstance(oc, PostgresComponent)
            if oc.auto_promote is not None and other != cname and oc.auto_promote != spec:
                report(
                    where,
                    f"{cname} and {other} are one group but their auto_promote differ: "
                    "write the same quorum and ttl in both",
                )
        longest = max(group, key=lambda n: getattr(components[n], "ttl", 0))
        ttl = getattr(components[longest], "ttl", 0)
        if spec.ttl < 2 * ttl:
            report(
                (*where, "ttl"),
                f"ttl {spec.ttl}s is shorter than twice {longest}'s ttl ({ttl}s): a local "
                f"failover there would let the other region promote itself; raise it to "
                f"{2 * ttl} or more",
            )
        if not isinstance(components.get(spec.quorum), EtcdComponent):
            continue  # unknown or not etcd: check_references says so where it is written
        per_region: dict[str | None, int] = {}
        for inst in instances.get(spec.quorum, ()):
            host = hosts.get(inst.host) if inst.host is not None else None
            region = host.region if host is not None else None
            per_region[region] = per_region.get(region, 0) + 1
        members = sum(per_region.values())
        placed = sorted(r for r in per_region if r is not None)
        if None in per_region or len(placed) < 3:
            report(
                (*where, "quorum"),
                f"etcd '{spec.quorum}' has members in {len(placed)} region(s) "
                f"({', '.join(placed) or 'none'}): a quorum that decides a region is gone "
                "needs members on hosts in at least three regions",
            )
            continue
        big = [r for r, n in per_region.items() if 2 * n > members]
        if big:
            report(
                (*where, "quorum"),
                f"region {big[0]} holds {per_region[big[0]]} of etcd '{spec.quorum}''s "
                f"{members} members, a majority: its loss would stop the quorum",
            )


def check_vip_regions(
    hosts: Mapping[str, Host],
    components: Mapping[str, Component],
    instances: Mapping[str, Sequence[Instance]],
    regions: Collection[str],
    report: Report,
) -> None:
    """A load balancer with `vip: {addresses: ...}` names known regions, each with at least
    one of its instances, and every instance is on a host in one of them (an instance
    elsewhere would have no address to hold)."""
    for cname, comp in components.items():
        if not isinstance(comp, LoadBalancerComponent) or comp.vip is None:
            continue
        if comp.vip.addresses is None:
            continue
        where: Loc = ("components", cname, "vip", "addresses")
        placed: dict[str | None, list[str]] = {}
        for inst in instances.get(cname, ()):
            host = hosts.get(inst.host) if inst.host is not None else None
            placed.setdefault(host.region if host is not None else None, []).append(inst.name)
        for region in comp.vip.addresses:
            if region not in regions:
                hint = suggest(region, regions) if regions else " (the file defines no regions)"
                report((*where, region), f"unknown region '{region}'{hint}")
            elif region not in placed:
                report(
                    (*where, region),
                    f"no instance of {cname} is in region {region}: nobody would hold its address",
                )
        for placed_in, names in placed.items():
            if placed_in is None:
                report(
                    ("components", cname, "instances"),
                    f"{', '.join(names)}: per-region addresses need each instance on a host "
                    "in a region (host: {zone: <region>/<zone>})",
                )
            elif placed_in not in comp.vip.addresses:
                report(
                    where,
                    f"{', '.join(names)} in region {placed_in} would hold no address: "
                    f"give {placed_in} one",
                )


def check_lb_routes(components: Mapping[str, Component], report: Report) -> None:
    """A route's `backup` names instances of its target, and leaves it a primary.

    A route whose every instance is a backup (or whose every other instance has
    weight 0) has nothing for the backups to stand in for: an error rather than a
    route that is "failed over" from the start.
    """
    for cname, comp in components.items():
        if not isinstance(comp, LoadBalancerComponent):
            continue
        for i, route in enumerate(comp.routes):
            target = components.get(route.to)
            if target is None or not route.backup:
                continue
            n = target.instance_count
            where: Loc = ("components", cname, "routes", i, "backup")
            outside = [k for k in route.backup if k >= n]
            if outside:
                report(
                    where,
                    f"instance {outside[0]} of {route.to} does not exist: it has {n} "
                    f"instance(s), numbered 0 to {n - 1}",
                )
                continue
            weights = (
                route.weights if route.weights is not None and len(route.weights) == n else None
            )
            primaries = [k for k in range(n) if k not in route.backup]
            if not primaries:
                report(
                    where,
                    f"every instance of {route.to} is a backup: a backup stands in for the "
                    "primaries when they are all down, so leave at least one out of `backup`",
                )
            elif weights is not None and all(weights[k] == 0 for k in primaries):
                report(
                    where,
                    f"every instance of {route.to} that is not a backup has weight 0: the "
                    "backups would serve from the start; give a primary a weight",
                )


def check_cycles(components: Mapping[str, Component], report: Report) -> None:
    """No component depends on itself, through `needs` or what its fields imply."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[tuple[str, Dependency | None]] = []

    def visit(name: str, via: Dependency | None) -> None:
        state[name] = 1
        stack.append((name, via))
        for dep in dependencies(name, components):
            if dep.target not in components:
                continue
            if state.get(dep.target) == 1:
                start = next(i for i, (n, _) in enumerate(stack) if n == dep.target)
                edges = [*(d for _, d in stack[start + 1 :]), dep]
                report(("components", name, *dep.path), _cycle(dep.target, edges))
            elif dep.target not in state:
                visit(dep.target, dep)
        stack.pop()
        state[name] = 2

    for name in components:
        if name not in state:
            visit(name, None)


def _cycle(start: str, edges: Sequence[Dependency | None]) -> str:
    if all(e is not None and e.why == "needs" for e in edges):
        names = [start, *(e.target for e in edges if e is not None)]
        return "cycle in needs: " + " -> ".join(names)
    out = start
    for e in edges:
        if e is not None:
            out += f" -> {e.target}" + ("" if e.why == "needs" else f" ({e.why})")
    return "cycle in dependencies: " + out


@dataclass(frozen=True, slots=True)
class _Use:
    instance: Instance
    field: str
    base: int


def check_ports(
    hosts: Mapping[str, Host],
    components: Mapping[str, Component],
    instances: Mapping[str, Sequence[Instance]],
    report: Report,
) -> None:
    """No two ports of instances on one address coincide.

    Instance i of a component listens on `port + i`, `peer_port + i`,
    `api_port + i` and `admin_port + i`; the instances of a load balancer with
    a `vip:` all listen on `port` (each on its own host). One problem per pair
    of fields, at the field that comes later in the file.
    """
    used: dict[tuple[str, int], _Use] = {}
    reported: set[tuple[str, str, str, str]] = set()
    for cname, comp in components.items():
        shared = isinstance(comp, LoadBalancerComponent) and comp.vip is not None
        for fname in PORT_FIELDS:
            base = getattr(comp, fname, None)
            if not isinstance(base, int):
                continue
            for inst in instances.get(cname, ()):
                host = hosts.get(inst.host) if inst.host is not None else None
                address = host.address if host is not None else "127.0.0.1"
                port = base if shared and fname == "port" else base + inst.index
                use = _Use(inst, fname, base)
                other = used.setdefault((address, port), use)
                if other is use or (shared and other.instance.component == cname):
                    continue
                key = (other.instance.component, other.field, cname, fname)
                if key in reported:
                    continue
                reported.add(key)
                report(("components", cname, fname), _overlap(use, other, port, address, instances))


def _overlap(
    use: _Use, other: _Use, port: int, address: str, instances: Mapping[str, Sequence[Instance]]
) -> str:
    def span(u: _Use) -> str:
        n = len(instances[u.instance.component])
        return f"{u.base}-{u.base + n - 1}" if n > 1 else str(u.base)

    mine, theirs = use.instance, other.instance
    end = other.base + len(instances[theirs.component]) - 1
    same = mine.component == theirs.component
    theirs_field = other.field if same else f"{theirs.component}'s {other.field}"
    return (
        f"port {port} on {address} is both {mine.name}'s {use.field} and {theirs.name}'s "
        f"{other.field}: instance i listens on {use.field} + i ({span(use)}), which overlaps "
        f"{theirs_field} + i ({span(other)}); leave room for every instance, "
        f"e.g. {use.field}: {end + 1}"
    )


def unreached_warnings(
    components: Mapping[str, Component],
    required: Collection[str],
    entry: Sequence[str],
    recovery: Collection[str] = (),
) -> list[tuple[Loc, str]]:
    """Components no `entry` component depends on: the analysis leaves them out.
    `recovery`: the standby clusters of required ones and what they need, which are a
    recovery path (`spofless pg promote-region`), not part of the serving system."""
    return [
        (
            ("components", name),
            f"no entry component depends on {name} (entry: {', '.join(entry)}), so the "
            f"analysis leaves it out: add it to the `needs` of what uses it, or to `entry`",
        )
        for name in components
        # A monitor is on the alerting path, not the serving one: `check` analyses it apart.
        if name not in required and name not in recovery and components[name].kind != "monitor"
    ]


def shared_address_warnings(
    data: Mapping[str, Any],
    hosts: Mapping[str, Host],
    components: Mapping[str, Component],
    instances: Mapping[str, Sequence[Instance]],
    required: Collection[str],
) -> list[tuple[Loc, str]]:
    """Hosts whose `address:` puts them on one machine (every loopback address is one).

    The analysis counts them as separate hosts; the machine under them is a
    single point of failure it cannot see when it holds more instances of a
    required component than that component may lose.
    """
    raw = data.get("hosts")
    given = {
        h
        for h, spec in (raw.items() if isinstance(raw, dict) else ())
        if isinstance(spec, dict) and "address" in spec
    }
    machines: dict[str, list[str]] = {}
    for name in hosts:
        if name in given:
            machines.setdefault(_machine(hosts[name].address), []).append(name)
    out: list[tuple[Loc, str]] = []
    for machine, names in machines.items():
        if len(names) < 2:
            continue
        fatal = []
        for cname in required:
            comp = components[cname]
            on = sum(1 for i in instances[cname] if i.host in names)
            if on > comp.instance_count - comp.required_up:
                fatal.append(cname)
        where = "loopback (127.0.0.0/8)" if machine == "loopback" else machine
        msg = f"hosts {', '.join(names)} share address {where}: they are one machine"
        if fatal:
            msg += (
                f", a single point of failure of {', '.join(fatal)} that the analysis cannot "
                "see (it counts them as separate hosts); give each host its own machine's "
                "address for production"
            )
        out.append((("hosts", names[0], "address"), msg))
    return out


def _machine(address: str) -> str:
    try:
        if ipaddress.ip_address(address).is_loopback:
            return "loopback"
    except ValueError:
        pass
    return address


def lone_region_vip_warnings(
    hosts: Mapping[str, Host],
    components: Mapping[str, Component],
    instances: Mapping[str, Sequence[Instance]],
) -> list[tuple[Loc, str]]:
    """A region of a per-region VIP (`vip.addresses`) with one load balancer instance: its
    address cannot float; its clients move to another region's only through DNS."""
    out: list[tuple[Loc, str]] = []
    for cname, comp in components.items():
        if not isinstance(comp, LoadBalancerComponent) or comp.vip is None:
            continue
        if comp.vip.addresses is None:
            continue
        for region in comp.vip.addresses:
            there = [
                i.name
                for i in instances.get(cname, ())
                if i.host is not None and i.host in hosts and hosts[i.host].region == region
            ]
            if len(there) == 1:
                out.append(
                    (
                        ("components", cname, "vip", "addresses", region),
                        f"{there[0]} is the only instance in region {region}: {region}'s "
                        f"address cannot float, and when {there[0]} fails {region}'s clients "
                        "reach another region's only through DNS (after its ttl); add an "
                        f"instance in {region} for a hand-over in under a second",
                    )
                )
    return out
