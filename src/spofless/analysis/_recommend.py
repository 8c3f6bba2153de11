"""Fixes an operator would make: one finding per root cause, each checked by the model.

Single points of failure are grouped by what causes them:

- a component that may lose none of its instances (one instance, or `min_up`
  equal to the count) is one cause, whatever fails with it (the instance, its
  host): the fix adds instances;
- a zone or region (or a host holding several instances) that carries more of
  a component's instances than it may lose is one cause per element, for all
  the components it takes down: the fix spreads them.

Every new instance goes on a dedicated new host named for its component
(`db-2`), in another zone than the component's instances (another region for
a region), so no fix ever co-locates two tiers. A zone or region is invented
only when the file has none to spare, named like its siblings (`eu-west/b`
after `eu-west/a`, `region-2`). Kind-aware steps say what else the new
instance needs (a second PostgreSQL instance needs replication and etcd).

Each fix is applied to a copy of the topology's data, validated like a file,
and the availability computed again: alone, and all fixes together.
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass, field
from typing import Any

from spofless.analysis._availability import compute_availability
from spofless.analysis._cutsets import CutSetSearch
from spofless.analysis._structure import Need, Structure, Unit, compile_structure
from spofless.topology import AutoPromoteSpec, PostgresComponent, Topology, topology_from_data


@dataclass(slots=True)
class Cause:
    """One root cause: the single points of failure it explains and the components."""

    key: tuple[str, str]  # ("instances", component) or ("spread", element)
    elements: list[str] = field(default_factory=list)
    needs: list[Need] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Fix:
    """The change that removes one cause, in short lines, and its effect alone."""

    cause: Cause
    title: str
    lines: tuple[str, ...]
    steps: tuple[str, ...]  # what else the kind needs
    availability_if_fixed: float
    data: dict[str, Any]  # the topology's data with this fix alone


@dataclass(frozen=True, slots=True)
class AllFixes:
    """Every fix applied together: the availability and what still fails alone."""

    availability: float
    remaining: tuple[str, ...]
    data: dict[str, Any]  # the topology's data with every fix


def causes(structure: Structure, search: CutSetSearch, spofs: list[str]) -> list[Cause]:
    """The root causes of `spofs`, in the order of their first element."""
    found: dict[tuple[str, str], Cause] = {}
    for element in spofs:
        level = element.partition(":")[0]
        for c in search.cuts([element]):
            need = structure.needs[c]
            # A component that may lose nothing is one cause with everything under its
            # instances; a new instance in another zone fixes them all. A region (or an
            # element holding more than it may lose) is a cause of its own.
            few = need.tolerance == 0 and level != "region"
            key = ("instances", need.name) if few else ("spread", element)
            cause = found.setdefault(key, Cause(key))
            if element not in cause.elements:
                cause.elements.append(element)
            if need not in cause.needs:
                cause.needs.append(need)
    return list(found.values())


def fixes(
    topology: Topology, structure: Structure, found: list[Cause]
) -> tuple[list[Fix], AllFixes]:
    """Each cause's fix with its availability alone, and all of them together.

    Together, regions are fixed first, then zones and hosts, then instance
    counts, and a cause that the fixes before it removed already is skipped:
    a second instance in another region fixes the host too.
    """
    out = []
    for cause in found:
        alone = _Editor(topology, copy.deepcopy(dict(topology.data)), structure)
        lines, steps = alone.apply(cause)
        steps = [*steps, *_standby_notes(topology, cause)]
        title = _title(cause, structure)
        out.append(Fix(cause, title, tuple(lines), tuple(steps), alone.availability(), alone.data))
    together = _Editor(topology, copy.deepcopy(dict(topology.data)), structure)
    rank = {"region": 0, "zone": 1, "host": 2}
    for cause in sorted(found, key=lambda c: rank.get(c.key[1].partition(":")[0], 3)):
        if set(cause.elements) & set(together.spofs()):
            together.apply(cause)
    fixed = together.structure()
    result = compute_availability(fixed, importance=False)
    return out, AllFixes(result.availability, tuple(CutSetSearch(fixed).spofs()), together.data)


def _standby_notes(topology: Topology, cause: Cause) -> list[str]:
    """A region lost with a postgres cluster that has a standby cluster elsewhere: that is
    a recovery by hand, which the analysis does not count (the region stays a SPOF)."""
    level, _, region = cause.key[1].partition(":")
    if level != "region":
        return []
    out = []
    for name in topology.components:
        group = topology.cluster_group(name)
        if len(group) < 2 or group[0] != name:
            continue
        hosts = [i.host for i in topology.instances[name]]
        if not hosts or any(h is None or topology.hosts[h].region != region for h in hosts):
            continue
        for standby in group[1:]:
            there = {topology.hosts[i.host].region for i in topology.instances[standby] if i.host}
            regions = ", ".join(sorted(r for r in there if r))
            auto = _auto_promote(topology, standby)
            if auto is not None:
                out.append(
                    f"{name}: its standby cluster {standby} ({regions}) takes over by itself "
                    f"once a majority of the quorum {auto.quorum} agrees the region is gone "
                    f"(auto_promote, region lease ttl {auto.ttl} s). The analysis counts each "
                    "cluster on its own: the region is still listed here"
                )
                continue
            out.append(
                f"{name}: its standby cluster {standby} ({regions}) recovers it by hand: "
                f"`spofless pg promote-region FILE --region {regions or 'R'}` (warm "
                "standby, not automatic: the region stays a single point of failure)"
            )
    return out


def _auto_promote(topology: Topology, name: str) -> AutoPromoteSpec | None:
    comp = topology.components[name]
    return comp.auto_promote if isinstance(comp, PostgresComponent) else None


def _title(cause: Cause, structure: Structure) -> str:
    kind, name = cause.key
    if kind == "instances":
        need = cause.needs[0]
        if need.count == 1:
            return f"{need.name} has a single instance"
        return f"{need.name} needs all {need.count} of its instances up (min_up {need.required})"
    units = structure.by_element()
    every = [n.name for n in cause.needs if units[name].covers[n.index] == n.count]
    parts = [f"every instance of {_and(every)} is"] if every else []
    for need in cause.needs:
        covered = units[name].covers[need.index]
        if covered < need.count:
            parts.append(f"{covered} of {need.count} of {need.name} (min_up {need.required})")
    level, _, place = name.partition(":")
    verb = "" if every else " are"
    return f"{_and(parts)}{verb} in {level} {place}"


class _Editor:
    """Edits to a copy of the topology's data: new hosts, zones, regions, instances."""

    def __init__(self, topology: Topology, data: dict[str, Any], structure: Structure) -> None:
        self.topology = topology
        self.data = data
        self._structure: Structure | None = structure  # of `data`; None after an edit
        if not isinstance(self.data.get("hosts"), dict):
            self.data["hosts"] = {}
        self.zone_of: dict[str, str | None] = {h.name: h.zone for h in topology.hosts.values()}
        self.zones = list(topology.zones)
        self.new_zones: set[str] = set()

    def availability(self) -> float:
        return compute_availability(self.structure(), importance=False).availability

    def structure(self) -> Structure:
        """The data's structure, validated like a file (so a fix never makes it invalid)."""
        if self._structure is None:
            fixed = topology_from_data(self.data, source=self.topology.source)
            self._structure = compile_structure(fixed)
        return self._structure

    def spofs(self) -> list[str]:
        return CutSetSearch(self.structure()).spofs()

    def apply(self, cause: Cause) -> tuple[list[str], list[str]]:
        """Change the data so that `cause` is gone; the fix's lines and the kind's steps.

        Counts come from the data as it is now, with the fixes applied before."""
        kind, name = cause.key
        lines: list[str] = []
        steps: list[str] = []
        for original in cause.needs:
            structure = self.structure()
            units = structure.by_element()
            need = next(n for n in structure.needs if n.name == original.name)
            count = need.count
            if kind == "instances":
                covered = max(
                    units[e].covers.get(need.index, 0) for e in cause.elements if e in units
                )
                lines += self._add(need, covered, None)
            else:
                lines += self._spread(need, units[name])
            self._structure = None
            if self._count(need.name) > count:
                steps += self._steps(need)
            if name.startswith("region:") and self._kind(need.name) == "load_balancer":
                steps.append(
                    f"{need.name}: a floating address stays in one region; clients reach "
                    "both regions through DNS"
                )
        return lines, steps

    # -- the changes ------------------------------------------------------------

    def _kind(self, component: str) -> str:
        return self.topology.components[component].kind

    def _count(self, component: str) -> int:
        value = self.data["components"][component]["instances"]
        return len(value) if isinstance(value, list) else int(value)

    def _hosts(self, component: str) -> list[str] | None:
        value = self.data["components"][component]["instances"]
        return list(value) if isinstance(value, list) else None

    def _add(self, need: Need, covered: int, outside: Unit | None) -> list[str]:
        comp = self.topology.components[need.name]
        majority = comp.min_up == "majority"
        add = _instances_to_add(need, covered, majority)
        raw = self.data["components"][need.name]
        hosts = self._hosts(need.name)
        count = need.count + add
        if hosts is None:
            raw["instances"] = count
            return [f"raise the instances of {need.name} from {need.count} to {count}"]
        required = count // 2 + 1 if majority else need.required
        new: list[str] = []
        crowded = self._crowded(hosts, need.tolerance)
        for _ in range(add):
            new.append(self._new_host(need.name, hosts, outside, (crowded, count - required)))
            hosts.append(new[-1])
        raw["instances"] = hosts
        head = f"add host{'s' if add > 1 else ''} {', '.join(new)}"
        where = self._where(new)
        what = "a second instance" if count == 2 else _n(add, "more instance")
        lines = [f"{head}{where}, with {what} of {need.name}"]
        if need.tolerance == 0 and need.count > 1:
            lines.append(f"(or lower min_up of {need.name} below {need.count})")
        return lines

    def _spread(self, need: Need, unit: Unit) -> list[str]:
        covered = unit.covers[need.index]
        if need.tolerance == 0:
            # Nothing to move: every instance is needed. Add some outside the element.
            return self._add(need, covered, unit)
        hosts = self._hosts(need.name)
        move = covered - need.tolerance
        if hosts is None:
            return self._add(need, covered, unit)
        moved: list[tuple[str, str]] = []
        crowded = self._crowded(hosts, need.tolerance)
        for i, host in enumerate(hosts):
            if len(moved) == move:
                break
            if self._under(host, unit):
                hosts[i] = ""  # gone from where it was, before choosing where it goes
                target = self._new_host(need.name, hosts, unit, (crowded, need.tolerance))
                moved.append((f"{need.name}/{i}", target))
                hosts[i] = target
        self.data["components"][need.name]["instances"] = hosts
        return [
            f"move {inst} to a new host {target}{self._where([target])}" for inst, target in moved
        ]

    def _steps(self, need: Need) -> list[str]:
        """What else a new instance of this kind needs to be useful."""
        comp = self.topology.components[need.name]
        if comp.kind == "postgres" and need.count == 1:
            etcds = [n for n, c in self.topology.components.items() if c.kind == "etcd"]
            if etcds:
                return [
                    f"{need.name}: the new instance is a streaming replica; {etcds[0]} decides "
                    "the failover"
                ]
            hosts = self._add_etcd(need.name)
            return [
                f"{need.name}: the new instance is a streaming replica; failover needs a quorum",
                f"add etcd: 3 members on hosts {', '.join(hosts)}, and `needs: [etcd]` to "
                f"{need.name}",
            ]
        if comp.kind == "etcd":
            return ["etcd: keep an odd number of members; add them one at a time"]
        if comp.kind == "load_balancer" and need.count == 1:
            return [
                f"{need.name}: clients need one address for both: a `vip:` or a DNS record "
                "listing both"
            ]
        if comp.kind == "dns":
            return [f"{need.name}: list every DNS server as an NS record at the parent zone"]
        if comp.kind in ("cache", "redis", "memcached"):
            return [f"{need.name}: shard or replicate the keys over the new instance"]
        if comp.kind == "service" and need.count == 1 and need.name in self.topology.entry:
            return [
                f"{need.name}: clients need one address for both: a load balancer or DNS in front"
            ]
        return []

    def _add_etcd(self, db: str) -> list[str]:
        taken = self.data["components"]
        name = "etcd" if "etcd" not in taken else _numbered("etcd", 2, taken)
        hosts: list[str] = []
        for _ in range(3):
            hosts.append(self._new_host(name, hosts, None, (set(), 1)))
        self.data["components"][name] = {"kind": "etcd", "instances": hosts, "min_up": "majority"}
        needs = self.data["components"][db].setdefault("needs", [])
        if name not in needs:
            needs.append(name)
        return hosts

    # -- placement --------------------------------------------------------------

    def _under(self, host: str, unit: Unit) -> bool:
        """Whether `host` lies below the element `unit` (region, zone or host)."""
        kind, _, name = unit.element.partition(":")
        zone = self.zone_of.get(host)
        if kind == "host":
            return host == name
        if kind == "zone":
            return zone == name
        if kind == "region":
            return zone is not None and zone.split("/", 1)[0] == name
        return False

    def _new_host(
        self, component: str, hosts: list[str], outside: Unit | None, tol: tuple[set[str], int]
    ) -> str:
        """A dedicated new host for one more instance of `component`, named for it, in a
        zone where it creates no new single point of failure (never below `outside`).

        `tol` is the crowded places (`_crowded`) before the fix, and how many of its
        instances the component may lose once the fix is made."""
        taken = set(self.data["hosts"]) | set(self.zone_of)
        name = _numbered(component, len(hosts) + 1, taken)
        zone = self._zone_for([h for h in hosts if h], outside, tol) if self.zones else None
        self.data["hosts"][name] = {"zone": zone} if zone is not None else {}
        self.zone_of[name] = zone
        return name

    def _crowded(self, hosts: list[str], tolerance: int) -> set[str]:
        """Zones and regions holding more of these instances than the component may lose:
        single points of failure with causes of their own (for a component that may lose
        nothing, its zones are part of the cause being fixed), where one more instance
        changes nothing."""
        zones = [self.zone_of.get(h) for h in hosts if h]
        regions = [_region(z) for z in zones if z is not None]
        out = {r for r in regions if regions.count(r) > tolerance}
        if tolerance > 0:
            out |= {z for z in zones if z is not None and zones.count(z) > tolerance}
        return out

    def _zone_for(self, hosts: list[str], outside: Unit | None, tols: tuple[set[str], int]) -> str:
        level, _, elem = outside.element.partition(":") if outside is not None else ("", "", "")
        used = [self.zone_of.get(h) for h in hosts]
        by_zone = {z: used.count(z) for z in self.zones}
        by_region: dict[str, int] = {}
        for z in self.zones:
            by_region.setdefault(_region(z), 0)
            by_region[_region(z)] += by_zone[z]
        # Places that hold more than the component may lose already are single points of
        # failure with causes of their own; one more instance there changes nothing.
        crowded, tol = tols

        def outside_ok(z: str) -> bool:
            if level == "region":
                return _region(z) != elem
            return z != elem if level == "zone" else True

        def region_ok(r: str) -> bool:
            return by_region[r] + 1 <= tol or r in crowded

        good = [
            z
            for z in self.zones
            if outside_ok(z) and (by_zone[z] + 1 <= tol or z in crowded) and region_ok(_region(z))
        ]
        if good:
            return min(good, key=lambda z: (by_zone[z], by_region[_region(z)], self.zones.index(z)))
        regions = [r for r in by_region if region_ok(r) and not (level == "region" and r == elem)]
        if regions:
            return self._new_zone(min(regions, key=lambda r: by_region[r]))
        return self._new_region()

    def _new_zone(self, region: str) -> str:
        regions = self.data.setdefault("regions", {})
        spec = regions.setdefault(region, {})
        zones = spec.get("zones", [])
        siblings = list(zones)
        name = _next_sibling(siblings)
        if isinstance(zones, dict):
            zones[name] = None
        else:
            spec["zones"] = [*zones, name]
        zone = f"{region}/{name}"
        self.zones.append(zone)
        self.new_zones.add(zone)
        return zone

    def _new_region(self) -> str:
        regions = self.data.setdefault("regions", {})
        name = _numbered("region", 2, regions)
        regions[name] = {"zones": ["a"]}
        zone = f"{name}/a"
        self.zones.append(zone)
        self.new_zones.add(zone)
        return zone

    def _where(self, hosts: list[str]) -> str:
        zones = [self.zone_of.get(h) for h in hosts]
        if not any(zones):
            return " (a machine each)" if len(hosts) > 1 else " (a machine of its own)"
        named = []
        for z in dict.fromkeys(z for z in zones if z):
            region = z.split("/", 1)[0]
            if region not in self.topology.regions:
                named.append(f"{z} (a new region)")
            elif z in self.new_zones:
                named.append(f"{z} (a new zone)")
            else:
                named.append(z)
        return f" in zone{'s' if len(named) > 1 else ''} {', '.join(named)}"


def _region(zone: str) -> str:
    return zone.split("/", 1)[0]


def _instances_to_add(need: Need, covered: int, majority: bool) -> int:
    """How many instances to add so that losing `covered` of them is tolerated."""
    add = 1
    while True:
        n = need.count + add
        required = n // 2 + 1 if majority else need.required
        if n - required >= covered:
            return add
        add += 1


def _numbered(base: str, start: int, taken: Any) -> str:
    """`base-<n>` for the first n from `start` that is not taken."""
    n = start
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _next_sibling(names: list[str]) -> str:
    """The next zone name after `names`, in their style: a b c -> d, 1 2 -> 3, else zone-2."""
    letters = string.ascii_lowercase
    if names and all(len(n) == 1 and n in letters for n in names):
        free = [c for c in letters if c not in names]
        if free:
            return free[0]
    if names and all(n.isdigit() for n in names):
        return str(max(int(n) for n in names) + 1)
    return _numbered("zone", len(names) + 1, names)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
