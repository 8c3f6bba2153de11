"""Brute force over every element state, straight from docs/design.md's definitions.

Independent of spofless.analysis on purpose: it reads the resolved Topology
only, so the property tests compare two unrelated computations.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from spofless.topology import Topology


def system_up(topology: Topology, down: set[str]) -> bool:
    """Whether the system is up when exactly the elements in `down` are down."""

    def instance_up(inst: object) -> bool:
        chain = [inst.element, *topology.parents(inst)]  # type: ignore[attr-defined]
        return not any(e in down for e in chain)

    memo: dict[str, bool] = {}

    def component_up(name: str) -> bool:
        if name not in memo:
            comp = topology.components[name]
            ups = sum(instance_up(i) for i in topology.instances[name])
            deps = topology.dependencies(name)  # needs and what its fields imply
            memo[name] = ups >= comp.required_up and all(component_up(d) for d in deps)
        return memo[name]

    return all(component_up(e) for e in topology.entry)


def availability(topology: Topology, forced: dict[str, bool] | None = None) -> float:
    """P(system up), enumerating every state of every element (forced ones fixed)."""
    forced = forced or {}
    elements = topology.elements()
    free = [e for e in elements if e not in forced]
    total = 0.0
    for states in itertools.product((True, False), repeat=len(free)):
        prob = 1.0
        down = {e for e, up in forced.items() if not up}
        for e, up in zip(free, states, strict=True):
            prob *= elements[e] if up else 1.0 - elements[e]
            if not up:
                down.add(e)
        if prob and system_up(topology, down):
            total += prob
    return total


def birnbaum(topology: Topology, element: str) -> float:
    return availability(topology, {element: True}) - availability(topology, {element: False})


def minimal_cut_sets(topology: Topology, max_order: int) -> list[tuple[str, ...]]:
    elements = sorted(topology.elements())
    cuts: list[tuple[str, ...]] = []
    for size in range(1, max_order + 1):
        for combo in itertools.combinations(elements, size):
            if any(set(c) <= set(combo) for c in cuts):
                continue
            if not system_up(topology, set(combo)):
                cuts.append(combo)
    return sorted(cuts, key=lambda s: (len(s), s))


def spofs(topology: Topology) -> list[str]:
    return [c[0] for c in minimal_cut_sets(topology, 1)]


def element_count(topology: Topology) -> int:
    return len(topology.elements())


def names(items: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return sorted(items, key=lambda s: (len(s), s))
