"""The structure model: a topology compiled into what the analysis computes on.

Only the required components matter (the `entry` components and everything
they need): the system is up exactly when each of them has at least `min_up`
instances up, because `needs` only adds the needed component's own condition.
Each required component becomes a `Need` (n instances, k required, the
instances' availability). The elements above those instances form a forest,
the failure tree: region -> zone -> host -> instance, with hosts that have no
zone and instances that have no host at the top. An element's failure takes
down every instance below it; elements in different branches cover disjoint
sets of instances, which is what makes counting cut sets and the dynamic
programme over the tree exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from spofless.topology import Topology


@dataclass(frozen=True, slots=True)
class Need:
    """A required component: up when at least `required` of `count` instances are up."""

    name: str
    index: int
    count: int
    required: int
    availability: float  # of each of its instances

    @property
    def tolerance(self) -> int:
        """How many of its instances may be down at once."""
        return self.count - self.required


@dataclass(slots=True)
class Unit:
    """One element of the failure tree. An instance unit has `component` >= 0."""

    element: str
    availability: float
    component: int = -1
    children: list[Unit] = field(default_factory=list)
    parent: Unit | None = field(default=None, repr=False)
    # Per component (index), how many of its instances are in this subtree.
    covers: dict[int, int] = field(default_factory=dict)

    def walk(self) -> Iterator[Unit]:
        yield self
        for child in self.children:
            yield from child.walk()

    def ancestors(self) -> Iterator[Unit]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


@dataclass(frozen=True)
class Structure:
    """The compiled topology: required components and the failure tree (top-level units)."""

    needs: tuple[Need, ...]
    roots: tuple[Unit, ...]

    def units(self) -> Iterator[Unit]:
        for root in self.roots:
            yield from root.walk()

    def by_element(self) -> dict[str, Unit]:
        return {u.element: u for u in self.units()}

    def restricted_to(self, components: list[int]) -> Structure:
        """The structure of some components alone, re-indexed in the given order."""
        index = {c: i for i, c in enumerate(components)}
        needs = tuple(
            Need(n.name, index[n.index], n.count, n.required, n.availability)
            for n in (self.needs[c] for c in components)
        )

        def copy(unit: Unit, parent: Unit | None) -> Unit | None:
            covers = {index[c]: n for c, n in unit.covers.items() if c in index}
            if not covers:
                return None
            new = Unit(unit.element, unit.availability, index.get(unit.component, -1))
            new.parent = parent
            new.covers = covers
            for child in unit.children:
                kept = copy(child, new)
                if kept is not None:
                    new.children.append(kept)
            return new

        roots = tuple(r for r in (copy(root, None) for root in self.roots) if r is not None)
        return Structure(needs, roots)


def compile_structure(topology: Topology) -> Structure:
    """Build the failure tree of `topology`'s required components.

    Elements that cover no instance of a required component are left out:
    they cannot change whether the system is up.
    """
    required = topology.required_components()
    needs = tuple(
        Need(
            name,
            i,
            topology.components[name].instance_count,
            topology.components[name].required_up,
            topology.instances[name][0].availability,
        )
        for i, name in enumerate(required)
    )
    regions: dict[str, Unit] = {}
    zones: dict[str, Unit] = {}
    hosts: dict[str, Unit] = {}
    roots: list[Unit] = []

    def attach(child: Unit, parent: Unit | None) -> None:
        child.parent = parent
        (parent.children if parent is not None else roots).append(child)

    def host_unit(name: str) -> Unit:
        if name in hosts:
            return hosts[name]
        host = topology.hosts[name]
        unit = hosts[name] = Unit(host.element, host.availability)
        parent: Unit | None = None
        if host.zone is not None and host.region is not None:
            if host.region not in regions:
                regions[host.region] = Unit(f"region:{host.region}", topology.regions[host.region])
                attach(regions[host.region], None)
            if host.zone not in zones:
                zones[host.zone] = Unit(f"zone:{host.zone}", topology.zones[host.zone])
                attach(zones[host.zone], regions[host.region])
            parent = zones[host.zone]
        attach(unit, parent)
        return unit

    # Instances in the order of their hosts in the file, so that the tree is stable.
    placed: list[tuple[int, Unit, str | None]] = []
    for need in needs:
        for inst in topology.instances[need.name]:
            unit = Unit(inst.element, inst.availability, need.index)
            placed.append((need.index, unit, inst.host))
    host_order = {h: i for i, h in enumerate(topology.hosts)}
    placed.sort(key=lambda p: (p[2] is None, host_order.get(p[2] or "", 0)))
    for comp, unit, host in placed:
        unit.covers = {comp: 1}
        parent = host_unit(host) if host is not None else None
        attach(unit, parent)
        for anc in unit.ancestors():
            anc.covers[comp] = anc.covers.get(comp, 0) + 1
    _order_for_early_closing(roots)
    return Structure(needs, tuple(roots))


def _order_for_early_closing(units: list[Unit]) -> None:
    """Order siblings so that units touching few components come first.

    The availability DP keeps one state per combination of open components'
    counts; finishing a component's instances early lets it settle sooner.
    """
    for unit in units:
        _order_for_early_closing(unit.children)
    # Hostless instances last, then group siblings by the components they touch.
    units.sort(key=lambda u: (u.component >= 0 and u.parent is None, min(u.covers, default=0)))
