"""Recommendations that remove a single point of failure, each checked by re-running the model.

For every component a SPOF takes down, the change is chosen from what the
counting says: a component that may lose none of its instances (one instance,
or `min_up` equal to the count) gets instances added; a host, zone or region
holding more of a component's instances than it may lose gets some moved to
hosts elsewhere, in another zone when there is one. The change is applied to
a copy of the topology's data, validated like a file, and the availability
is computed again on the result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from spofless.analysis._availability import compute_availability
from spofless.analysis._structure import Need, Structure, Unit, compile_structure
from spofless.topology import Topology, topology_from_data


@dataclass(frozen=True, slots=True)
class Recommendation:
    text: str
    availability_if_fixed: float
    data: dict[str, Any]  # the changed topology's data


def recommend(
    topology: Topology, structure: Structure, unit: Unit, fatal: list[int]
) -> Recommendation:
    """A change that keeps `unit`'s element from taking down the components `fatal`."""
    data = copy.deepcopy(dict(topology.data))
    changes = _Changes(topology, data)
    texts = [changes.fix(structure.needs[c], unit) for c in fatal]
    fixed = topology_from_data(data, source=topology.source)
    result = compute_availability(compile_structure(fixed), importance=False)
    return Recommendation("; ".join(texts), result.availability, data)


class _Changes:
    """Edits to a topology's plain data, keeping track of where instances are."""

    def __init__(self, topology: Topology, data: dict[str, Any]) -> None:
        self.topology = topology
        self.data = data
        self.data.setdefault("hosts", {})
        self.host_zone: dict[str, str | None] = {h.name: h.zone for h in topology.hosts.values()}
        self.zone_names = list(topology.zones)

    # -- where a component's instances are ------------------------------------

    def _hosts_of(self, component: str) -> list[str] | None:
        value = self.data["components"][component]["instances"]
        return list(value) if isinstance(value, list) else None

    def _under(self, host: str, unit: Unit) -> bool:
        """Whether `host` lies below the element `unit` (region, zone or host)."""
        kind, _, name = unit.element.partition(":")
        zone = self.host_zone.get(host)
        if kind == "host":
            return host == name
        if kind == "zone":
            return zone == name
        if kind == "region":
            return zone is not None and zone.split("/", 1)[0] == name
        return False

    def _zone_of_unit(self, unit: Unit) -> str | None:
        kind, _, name = unit.element.partition(":")
        if kind == "zone":
            return name
        if kind == "host":
            return self.host_zone.get(name)
        if kind == "instance":
            comp, _, idx = name.rpartition("/")
            host = self.topology.instances[comp][int(idx)].host
            return self.host_zone.get(host) if host is not None else None
        return None

    # -- the fix ----------------------------------------------------------------

    def fix(self, need: Need, unit: Unit) -> str:
        covered = unit.covers[need.index]
        hosts = self._hosts_of(need.name)
        kind = unit.element.partition(":")[0]
        majority = self.topology.components[need.name].min_up == "majority"
        if hosts is None:  # instances without hosts: a count
            add = _instances_to_add(need, covered, majority)
            self.data["components"][need.name]["instances"] = need.count + add
            new_count = need.count + add
            return f"raise the instance count of {need.name} from {need.count} to {new_count}"
        if need.tolerance == 0 or kind == "instance":
            add = _instances_to_add(need, covered, majority)
            targets = [self._place(need, hosts, unit) for _ in range(add)]
            self.data["components"][need.name]["instances"] = hosts
            where = self._where(targets)
            if need.count == 1:
                return f"add a second instance of {need.name} on {where}"
            if need.tolerance == 0:
                return (
                    f"{need.name} needs all {need.count} of its instances up (min_up "
                    f"{need.required}): lower min_up or add {_n(add, 'instance')} on {where}"
                )
            return f"add {_n(add, 'instance')} of {need.name} on {where}"
        move = covered - need.tolerance
        moved: list[str] = []
        for i, host in enumerate(list(hosts)):
            if len(moved) == move:
                break
            if self._under(host, unit):
                hosts[i] = ""  # placeholder, so the new host is not counted twice
                target = self._place(need, hosts, unit, append=False)
                hosts[i] = target
                moved.append(target)
        self.data["components"][need.name]["instances"] = hosts
        scope = {"host": "hosts", "zone": "zones", "region": "regions"}.get(kind, "hosts")
        return (
            f"spread {need.name} across {scope}: move {_n(move, 'instance')} off "
            f"{unit.element} to {self._where(moved)}"
        )

    def _place(self, need: Need, hosts: list[str], unit: Unit, append: bool = True) -> str:
        """Choose (or create) a host outside `unit` for one more instance of `need`.

        Spreads across regions first, then zones, then hosts: the host whose
        region, zone and host hold the fewest of the component's instances.
        When even that one would hold more than the component may lose at the
        level of the single point of failure, a new region, zone or host is made.
        """
        level = unit.element.partition(":")[0]
        tolerance = max(1, need.tolerance)
        counts: dict[str, int] = {}
        for h in hosts:
            if h:
                for key in self._keys(h):
                    counts[key] = counts.get(key, 0) + 1

        def load(h: str) -> tuple[int, int, int]:
            region, zone, host = self._keys(h)
            return (counts.get(region, 0), counts.get(zone, 0), counts.get(host, 0))

        avoid = self._zone_of_unit(unit)
        outside = [h for h in self.host_zone if not self._under(h, unit) and h != _name(unit)]
        if self.zone_names:  # hosts without a zone would add no spread
            outside = [h for h in outside if self.host_zone[h] is not None]
        best = min(outside, key=lambda h: (*load(h), self.host_zone[h] == avoid), default=None)
        full = best is None or (
            (level == "region" and load(best)[0] >= tolerance)
            or (level == "zone" and load(best)[1] >= tolerance)
            or load(best)[2] >= 1
            or (self.host_zone[best] == avoid and avoid is not None)
        )
        if best is not None and not full:
            target = best
        else:
            zone = self._other_zone(unit, level, counts, tolerance)
            target = self._new_host(_base_name(unit, need.name), zone)
        if append:
            hosts.append(target)
        return target

    def _keys(self, host: str) -> tuple[str, str, str]:
        zone = self.host_zone.get(host) or ""
        return ("r:" + zone.split("/", 1)[0], "z:" + zone, "h:" + host)

    def _other_zone(
        self, unit: Unit, level: str, counts: dict[str, int], tolerance: int
    ) -> str | None:
        """A zone outside `unit` with room for one more instance, created if none has."""
        if not self.zone_names:
            return None
        avoid = self._zone_of_unit(unit)
        name = _name(unit)

        def load(z: str) -> tuple[int, int]:
            return (counts.get("r:" + z.split("/", 1)[0], 0), counts.get("z:" + z, 0))

        choices = [
            z
            for z in self.zone_names
            if z != avoid
            and not (level == "region" and z.split("/", 1)[0] == name)
            and not (level == "region" and load(z)[0] >= tolerance)
            and not (level == "zone" and load(z)[1] >= tolerance)
        ]
        if choices:
            return min(choices, key=load)
        regions = self.data.setdefault("regions", {})
        if level == "region":
            new_region = _fresh(name, regions)
            regions[new_region] = {"zones": ["a"]}
            zone = f"{new_region}/a"
        else:
            region, _, zname = (avoid or self.zone_names[0]).partition("/")
            spec = regions[region]
            zones = spec.get("zones", [])
            new_zone = _fresh(zname, zones)
            if isinstance(zones, dict):
                zones[new_zone] = {}
            else:
                spec["zones"] = [*zones, new_zone]
            zone = f"{region}/{new_zone}"
        self.zone_names.append(zone)
        return zone

    def _where(self, names: list[str]) -> str:
        """`host node-2`, or `a new host web-b in zone eu-west/c (new zone)` for made-up ones."""
        out = []
        for h in sorted(set(names), key=names.index):
            if h in self.topology.hosts:
                out.append(f"host {h}")
                continue
            zone = self.host_zone.get(h)
            if zone is None:
                out.append(f"a new host {h}")
                continue
            region = zone.split("/", 1)[0]
            new = (
                " (new region)"
                if region not in self.topology.regions
                else " (new zone)"
                if zone not in self.topology.zones
                else ""
            )
            out.append(f"a new host {h} in zone {zone}{new}")
        return ", ".join(out)

    def _new_host(self, base: str, zone: str | None) -> str:
        name = _fresh(base, self.data["hosts"])
        self.data["hosts"][name] = {"zone": zone} if zone is not None else {}
        self.host_zone[name] = zone
        return name


def _instances_to_add(need: Need, covered: int, majority: bool) -> int:
    """How many instances to add so that losing `covered` of them is tolerated."""
    add = 1
    while True:
        n = need.count + add
        required = n // 2 + 1 if majority else need.required
        if n - required >= covered:
            return add
        add += 1


def _name(unit: Unit) -> str:
    return unit.element.partition(":")[2]


def _base_name(unit: Unit, component: str) -> str:
    kind, _, name = unit.element.partition(":")
    if kind == "host":
        return name
    return component


def _fresh(name: str, taken: Any) -> str:
    """`name-b`, `name-c`, ...: the first that is not in `taken`."""
    for suffix in "bcdefghijklmnopqrstuvwxyz":
        if f"{name}-{suffix}" not in taken:
            return f"{name}-{suffix}"
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
