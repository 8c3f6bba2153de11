"""`analyze`: everything `spofless check` reports about one topology, as plain data."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from spofless.analysis._availability import compute_availability
from spofless.analysis._cutgroups import CutSetLine, group_cut_sets
from spofless.analysis._cutsets import CutSetSearch
from spofless.analysis._recommend import causes, fixes
from spofless.analysis._rpo import DataLoss, Measured, Recovery, data_loss, recovery
from spofless.analysis._structure import Need, compile_structure
from spofless.errors import SpoflessError
from spofless.topology import Location, Problem, Topology

MINUTES_PER_YEAR = 365.25 * 24 * 60
# Cut sets above order 2 are searched only on topologies of at most this many elements.
MAX_ELEMENTS_ABOVE_ORDER_2 = 2_000


class AnalysisError(SpoflessError):
    """The analysis cannot be run as asked (for example --max-order too high for the size)."""


@dataclass(frozen=True, slots=True)
class Spof:
    """A single point of failure and the change that removes it."""

    element: str
    components: tuple[str, ...]  # the required components its failure takes down
    reason: str
    recommendation: str
    availability_if_fixed: float
    location: Location | None  # of the first component at fault, in the topology file


@dataclass(frozen=True, slots=True)
class Finding:
    """One root cause of single points of failure and the change an operator would make."""

    title: str  # e.g. "db has a single instance"
    elements: tuple[str, ...]  # the single points of failure it explains
    components: tuple[str, ...]
    fix: tuple[str, ...]  # short lines
    steps: tuple[str, ...]  # what else the kind needs (replication, a quorum, ...)
    availability_if_fixed: float  # with this fix alone
    location: Location | None


@dataclass(frozen=True, slots=True)
class ComponentSummary:
    name: str
    kind: str
    instances: int
    min_up: int
    availability: float  # of the component alone (its instances and what they run on)
    location: Location | None


@dataclass(frozen=True, slots=True)
class Importance:
    element: str
    birnbaum: float


@dataclass(frozen=True, slots=True)
class Report:
    """The findings of `analyze`. `ok` is true when there is no single point of failure."""

    name: str
    source: str
    max_order: int
    availability: float
    unavailability: float
    exact: bool
    availability_error: float  # absolute bound on the error of availability; 0 when exact
    spofs: tuple[Spof, ...]
    cut_sets: tuple[tuple[str, ...], ...]
    cut_set_components: tuple[tuple[str, ...], ...]  # what each cut set takes down
    importance: tuple[Importance, ...]
    components: tuple[ComponentSummary, ...]
    elements: int
    findings: tuple[Finding, ...] = ()
    # With every finding's fix applied together; None when there is nothing to fix.
    availability_after_fixes: float | None = None
    remaining_after_fixes: tuple[str, ...] = ()  # single points of failure still left
    warnings: tuple[Problem, ...] = ()  # what is valid but probably not meant, and where
    cut_set_lines: tuple[CutSetLine, ...] = ()  # cut sets of 2+ elements, grouped
    data_loss: tuple[DataLoss, ...] = ()  # what a failover can lose, per postgres component
    recovery: tuple[Recovery, ...] = ()  # tier, RTO and RPO per entry component's data

    @property
    def objectives_met(self) -> bool:
        """Whether the design meets every declared objective (`objectives:`)."""
        return not any(r.unmet for r in self.recovery)

    @property
    def ok(self) -> bool:
        return not self.spofs

    @property
    def downtime_minutes_per_year(self) -> float:
        return self.unavailability * MINUTES_PER_YEAR

    def component(self, name: str) -> ComponentSummary:
        return next(c for c in self.components if c.name == name)

    @property
    def nines(self) -> float:
        """-log10(unavailability); infinite when the system cannot fail."""
        return math.inf if self.unavailability <= 0 else -math.log10(self.unavailability)


def analyze(
    topology: Topology, max_order: int = 2, measured: Mapping[str, Measured] | None = None
) -> Report:
    """Find the SPOFs, minimal cut sets, availability and importances of `topology`.

    `measured`: the newest restore drill per postgres component, for the restore time."""
    if max_order < 1:
        raise AnalysisError(f"--max-order must be at least 1, not {max_order}")
    structure = compile_structure(topology)
    units = structure.by_element()
    if max_order > 2 and len(units) > MAX_ELEMENTS_ABOVE_ORDER_2:
        raise AnalysisError(
            f"--max-order {max_order} is limited to topologies of at most "
            f"{MAX_ELEMENTS_ABOVE_ORDER_2} elements (this one has {len(units)}); use 1 or 2"
        )
    result = compute_availability(structure)
    search = CutSetSearch(structure)
    cut_sets = search.minimal_cut_sets(max_order)

    spof_elements = [s[0] for s in cut_sets if len(s) == 1]
    found = causes(structure, search, spof_elements)
    fixed, together = fixes(topology, structure, found) if found else ([], None)
    findings = tuple(
        Finding(
            title=f.title,
            elements=tuple(f.cause.elements),
            components=tuple(n.name for n in f.cause.needs),
            fix=f.lines,
            steps=f.steps,
            availability_if_fixed=f.availability_if_fixed,
            location=_where(topology, f.cause.key),
        )
        for f in fixed
    )
    spofs = []
    for element in spof_elements:
        unit = units[element]
        fatal = search.cuts([element])
        names = tuple(structure.needs[c].name for c in fatal)
        mine = [f for f in findings if element in f.elements]
        spofs.append(
            Spof(
                element=element,
                components=names,
                reason=_reason(element, [(structure.needs[c], unit.covers[c]) for c in fatal]),
                recommendation="; ".join(line for f in mine for line in f.fix),
                availability_if_fixed=min(f.availability_if_fixed for f in mine),
                location=topology.location_of("components", names[0], "instances"),
            )
        )

    taken_down = [tuple(structure.needs[c].name for c in search.cuts(cut)) for cut in cut_sets]
    need_names = [n.name for n in structure.needs]
    lines = group_cut_sets(
        cut_sets,
        taken_down,
        lambda e: {need_names[c]: n for c, n in units[e].covers.items()},
        {n: [i.host or "" for i in topology.instances[n]] for n in need_names},
    )
    components = []
    for need in structure.needs:
        alone = compute_availability(structure.restricted_to([need.index]), importance=False)
        comp = topology.components[need.name]
        components.append(
            ComponentSummary(
                need.name,
                comp.kind,
                need.count,
                need.required,
                alone.availability,
                topology.location_of("components", need.name),
            )
        )
    importance = sorted(
        (Importance(e, max(0.0, b)) for e, b in result.importance.items()),
        key=lambda i: (-i.birnbaum, i.element),
    )
    return Report(
        name=topology.name,
        source=topology.source,
        max_order=max_order,
        availability=result.availability,
        unavailability=result.unavailability,
        exact=result.exact,
        availability_error=result.error,
        spofs=tuple(spofs),
        cut_sets=tuple(cut_sets),
        cut_set_components=tuple(taken_down),
        importance=tuple(importance),
        components=tuple(components),
        elements=len(units),
        findings=findings,
        availability_after_fixes=None if together is None else together.availability,
        remaining_after_fixes=() if together is None else together.remaining,
        warnings=topology.warnings,
        cut_set_lines=tuple(lines),
        data_loss=data_loss(topology),
        recovery=recovery(topology, measured),
    )


def _where(topology: Topology, key: tuple[str, str]) -> Location | None:
    """Where the file states a cause: the component's instances, or the zone, region or
    host that holds too many of them."""
    kind, name = key
    if kind == "instances":
        return topology.location_of("components", name, "instances")
    level, _, place = name.partition(":")
    if level == "region":
        return topology.location_of("regions", place)
    if level == "zone":
        return topology.location_of("regions", place.split("/", 1)[0], "zones")
    return topology.location_of("hosts", place)


def _reason(element: str, fatal: list[tuple[Need, int]]) -> str:
    """Why the element's failure alone takes the system down, one clause per cause."""
    everything = [need.name for need, covered in fatal if covered == need.count]
    parts = []
    for need, covered in fatal:
        if element.startswith("instance:"):
            if need.count == 1:
                parts.append(f"the only instance of {need.name}")
            else:
                parts.append(
                    f"{need.name} needs all {need.count} of its instances up "
                    f"(min_up {need.required})"
                )
        elif covered < need.count:
            parts.append(
                f"{covered} of the {need.count} instances of {need.name} depend on it "
                f"and {need.name} needs {need.required} up"
            )
    if everything and not element.startswith("instance:"):
        names = _and(everything)
        parts.insert(0, f"every instance of {names} depends on it")
    return "; ".join(parts)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
