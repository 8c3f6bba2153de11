"""The analysis re-run on the live state: what is still redundant, and what is not.

An element that is down is down in the model (DESIGN.md's semantics, unchanged):
the live topology is the topology without the instances that are down or stand
on a host, zone or region that is down, and without the components that have
fewer than `min_up` instances left or need one that does. `analyze` runs on it
as it is, so every figure is the analysis's own:

- live availability: P(system up | what is down now stays down);
- live single points of failure: elements whose loss alone now takes the system
  down (in the original topology's names: instance indexes are mapped back);
- each entry component's margin: how many more element failures it takes to go
  down (the size of its smallest live cut set; 0 when it is down). Cut sets are
  searched up to `max_order` elements: a margin above reads "at least
  max_order + 1".

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from spofless.analysis import AnalysisError, Report, analyze
from spofless.topology import Topology, topology_from_data


@dataclass(frozen=True, slots=True)
class Margin:
    """How many more failures an entry component can take, and what would take it down."""

    component: str
    failures: int  # more element failures that take it down; 0: it is down
    at_least: bool  # no cut set of up to max_order elements: `failures` is a lower bound
    cuts: tuple[tuple[str, ...], ...]  # its smallest live cut sets, original names

    @property
    def down(self) -> bool:
        return self.failures == 0


@dataclass(frozen=True, slots=True)
class LiveAnalysis:
    """The analysis of one live state."""

    down: frozenset[str]  # the elements down (instances, hosts, zones, regions)
    down_components: tuple[str, ...]  # components down, dependencies first
    availability: float  # 0 when an entry component is down
    spofs: tuple[str, ...]  # live single points of failure of the system
    margins: Mapping[str, Margin]  # entry component -> its margin

    @property
    def system_up(self) -> bool:
        return not any(m.down for m in self.margins.values())


def alerting_path(topology: Topology) -> Topology | None:
    """The topology with the monitors as its entry (the path an alert takes: the
    monitors and the etcd they claim in), or None when it has no monitor."""
    monitors = [n for n, c in topology.components.items() if c.kind == "monitor"]
    if not monitors:
        return None
    data = {**topology.data, "entry": monitors}
    return topology_from_data(data, source=topology.source, locations=topology.locations)


def instance_down(topology: Topology, component: str, index: int, down: Collection[str]) -> bool:
    """Whether an instance is down: it, or its host, zone or region is."""
    inst = topology.instances[component][index]
    return inst.element in down or any(p in down for p in topology.parents(inst))


def live_analysis(topology: Topology, down: Collection[str], max_order: int = 3) -> LiveAnalysis:
    """Analyse `topology` with the elements in `down` failed (see the module docstring)."""
    down = frozenset(down)
    live, kept, dead = _live_topology(topology, down)
    margins: dict[str, Margin] = {
        name: Margin(name, 0, False, ()) for name in topology.entry if name in dead
    }
    if live is None:
        return LiveAnalysis(down, tuple(dead), 0.0, (), margins)
    report = _analyze(live, max_order)

    def original(element: str) -> str:
        kind, _, rest = element.partition(":")
        if kind != "instance":
            return element
        comp, _, index = rest.rpartition("/")
        return f"instance:{comp}/{kept[comp][int(index)]}"

    cuts = [tuple(sorted(original(e) for e in cut)) for cut in report.cut_sets]
    for name in live.entry:
        reach = set(live.dependency_order([name]))
        mine = [
            cut
            for cut, taken in zip(cuts, report.cut_set_components, strict=True)
            if reach.intersection(taken)
        ]
        if not mine:
            margins[name] = Margin(name, report.max_order + 1, True, ())
            continue
        size = min(len(c) for c in mine)
        margins[name] = Margin(name, size, False, tuple(c for c in mine if len(c) == size))
    availability = 0.0 if set(dead).intersection(topology.entry) else report.availability
    spofs = tuple(sorted(original(s.element) for s in report.spofs))
    ordered = {n: margins[n] for n in topology.entry}
    return LiveAnalysis(down, tuple(dead), availability, spofs, ordered)


def _analyze(live: Topology, max_order: int) -> Report:
    try:
        return analyze(live, max_order=max_order)
    except AnalysisError:
        # Orders above 2 are limited to small topologies: fall back to pairs.
        return analyze(live, max_order=min(max_order, 2))


def _live_topology(
    topology: Topology, down: frozenset[str]
) -> tuple[Topology | None, dict[str, list[int]], list[str]]:
    """The live topology, each live component's kept instance indexes, and the components
    that are down (dependencies first). None when every entry component is down."""
    kept: dict[str, list[int]] = {}
    dead: list[str] = []
    for name in topology.dependency_order():
        comp = topology.components[name]
        alive = [
            inst.index
            for inst in topology.instances[name]
            if not instance_down(topology, name, inst.index, down)
        ]
        if len(alive) < comp.required_up or any(d in dead for d in topology.dependencies(name)):
            dead.append(name)
        else:
            kept[name] = alive
    entry = [n for n in topology.entry if n not in dead]
    if not entry:
        return None, kept, dead
    components: dict[str, Any] = {}
    for name, alive in kept.items():
        comp = topology.components[name]
        insts = topology.instances[name]
        spec: dict[str, Any] = {
            # Every kind as analysis-only: the analysis reads the common fields alone, and
            # a runtime kind's own checks (a vip needs 2 instances) do not hold for a part.
            "kind": "observed",
            "instances": (
                len(alive) if isinstance(comp.instances, int) else [insts[i].host for i in alive]
            ),
            "min_up": comp.required_up,
            # A kind's implied dependencies (routes, records, etcd) made explicit.
            "needs": topology.dependencies(name),
        }
        if comp.availability is not None:
            spec["availability"] = comp.availability
        components[name] = spec
    data = {
        key: topology.data[key]
        for key in ("name", "defaults", "regions", "hosts")
        if key in topology.data
    }
    data.update(components=components, entry=entry)
    return topology_from_data(data, source=f"<live {topology.name}>"), kept, dead
