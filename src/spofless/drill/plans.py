"""What a drill does, as data: phases of faults under one set of traffic streams (pure).

    scenario_plan(topology, name)        a scenario of the file's `drills:`: one phase
    analysis_plan(topology, report, ...) "prove the analysis": one phase per element
    only_elements(plan, ["zone", "host:h1"]) that plan cut to some kinds or elements
    random_plan(topology, seed, count)   a seeded schedule (spofless.drill.schedule)

A phase applies its faults at their times (or on their events), runs for its
duration, takes back what is still in place, and, when it `settles`, waits until the
system is whole again before the next phase starts: one fault at a time, attributable
and replayable.

**Prove the analysis.** Each element the analysis knows (each instance and host the
stack runs; in the lab each zone and region too) is failed alone: its instances
frozen (SIGSTOP of their process trees; cut off, in the lab, for zones and regions)
for `hold` seconds, then given back. The analysis predicts `down` for a single point
of failure and `up` for every other element. The measured outcome is `down` when an
entry stream was still failing when the element came back (the system did not recover
by itself while the element was failed), `up` otherwise (no error, or a failover the
clients waited through).

**Default traffic.** A plan whose file gives no `traffic:` gets one stream per entry
component, the way its clients reach it: HTTP through a load balancer in http mode
(GET `/`), SQL writes through a postgres component or a tcp load balancer in front of
one, and a connection probe (tcp connect) for anything else with a port.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spofless.drill.errors import DrillError
from spofless.drill.schedule import FaultKind, draw_schedule, fault_spec
from spofless.topology import Topology
from spofless.topology._drills import (
    AbortSpec,
    DrillSpec,
    FaultSpec,
    SteadyState,
    TrafficSpec,
    drills_of,
)

PHASE_LEAD = 1.0  # seconds of traffic in a phase before its fault
SETTLE_AFTER = 2.0  # seconds of traffic in a phase after its fault is taken back

# The random plan's kinds (the list; a rejoin kill needs to know the member
# being repaired, which only the test suite's nemesis follows).
RANDOM_KINDS: tuple[FaultKind, ...] = (
    FaultKind.NODE_KILL,
    FaultKind.POSTMASTER_KILL,
    FaultKind.NODE_PAUSE,
    FaultKind.AGENT_PAUSE,
    FaultKind.REPLICA_KILL,
    FaultKind.ETCD_LEADER_KILL,
    FaultKind.ETCD_LEADER_PAUSE,
    FaultKind.SWITCHOVER,
)


@dataclass(frozen=True)
class Phase:
    name: str
    faults: tuple[FaultSpec, ...]
    duration: float
    settle: bool = True
    element: str | None = None  # analysis plan: the element failed
    predicted: str | None = None  # analysis plan: "up" or "down"
    seed: int = 0  # for faults that pick one instance of several


@dataclass(frozen=True)
class Plan:
    kind: str  # "scenario:<name>", "analysis", "random"
    phases: tuple[Phase, ...]
    traffic: tuple[TrafficSpec, ...]
    steady_state: SteadyState
    abort: AbortSpec | None
    expect: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    notes: tuple[str, ...] = ()  # what the plan left out, and why


def fault(**fields: Any) -> FaultSpec:
    return FaultSpec.model_validate(fields)


def scenario_plan(topology: Topology, name: str, seed: int = 0) -> Plan:
    drills = drills_of(topology)
    if name not in drills:
        known = ", ".join(drills) or "none"
        raise DrillError(
            f"{topology.source}: no scenario {name!r} in `drills:` (scenarios: {known})"
        )
    d: DrillSpec = drills[name]
    phase = Phase(name, tuple(d.faults), d.planned_duration(), settle=True, seed=seed)
    return Plan(
        f"scenario:{name}",
        (phase,),
        tuple(d.traffic) or default_traffic(topology),
        d.steady_state,
        d.abort,
        dict(d.expect),
        seed,
    )


def analysis_plan(
    topology: Topology,
    spof_elements: Sequence[str],
    running: Sequence[str],
    *,
    hold: float,
    lab: bool,
) -> Plan:
    """One phase per element: instances and hosts (zones and regions in the lab) that
    the stack runs something of; `spof_elements` are the analysis's single points of
    failure, `running` the names of the instances the stack runs (`db/0`)."""
    spofs = set(spof_elements)
    runs = set(running)
    phases: list[Phase] = []
    notes: list[str] = []
    for inst in topology.all_instances():
        if inst.name not in runs:
            notes.append(f"{inst.element}: not run by this stack, not drilled")
            continue
        phases.append(
            _element_phase(
                inst.element, fault(at=PHASE_LEAD, pause=inst.name, **{"for": hold}), hold, spofs
            )
        )
    for host in topology.hosts.values():
        if not any(i.host == host.name and i.name in runs for i in topology.all_instances()):
            continue
        spec = (
            fault(at=PHASE_LEAD, cut=host.element, **{"for": hold})
            if lab
            else fault(at=PHASE_LEAD, pause=host.element, **{"for": hold})
        )
        phases.append(_element_phase(host.element, spec, hold, spofs))
    if lab:
        for zone in topology.zones:
            phases.append(
                _element_phase(
                    f"zone:{zone}",
                    fault(at=PHASE_LEAD, cut=f"zone:{zone}", **{"for": hold}),
                    hold,
                    spofs,
                )
            )
        for region in topology.regions:
            phases.append(
                _element_phase(
                    f"region:{region}",
                    fault(at=PHASE_LEAD, cut=f"region:{region}", **{"for": hold}),
                    hold,
                    spofs,
                )
            )
    elif topology.zones or topology.regions:
        notes.append("zones and regions are drilled in the lab only (`spofless up --lab`)")
    return Plan(
        "analysis",
        tuple(phases),
        default_traffic(topology),
        SteadyState(),
        None,
        {},
        None,
        tuple(notes),
    )


ELEMENT_KINDS = ("instance", "host", "zone", "region")


def only_elements(plan: Plan, selectors: Sequence[str]) -> Plan:
    """`plan` (the default plan) with only the phases of the elements `selectors` name:
    a kind (`instance`, `host`, `zone`, `region`), an element (`host:h1`, `zone:east/a`)
    or an instance (`web/0`). A selector that names nothing the plan drills is an error
    that lists what it does."""
    if not selectors:
        return plan
    elements = [p.element for p in plan.phases if p.element is not None]

    def matches(sel: str, element: str) -> bool:
        if sel in ELEMENT_KINDS:
            return element.startswith(f"{sel}:")
        return element == (sel if ":" in sel else f"instance:{sel}")

    for sel in selectors:
        if not any(matches(sel, e) for e in elements):
            raise DrillError(
                f"--only {sel}: the default plan drills no such element (kinds: "
                f"{', '.join(ELEMENT_KINDS)}; elements: {', '.join(elements) or 'none'})"
            )
    kept = tuple(
        p
        for p in plan.phases
        if p.element is not None and any(matches(sel, p.element) for sel in selectors)
    )
    left = len(plan.phases) - len(kept)
    return replace(plan, phases=kept, notes=(*plan.notes, f"--only: {left} element(s) left out"))


def _element_phase(element: str, spec: FaultSpec, hold: float, spofs: set[str]) -> Phase:
    return Phase(
        element,
        (spec,),
        PHASE_LEAD + hold + SETTLE_AFTER,
        settle=True,
        element=element,
        predicted="down" if element in spofs else "up",
    )


def random_plan(topology: Topology, seed: int, count: int) -> Plan:
    """`count` faults drawn with `seed` from the kinds this topology has parts for."""
    pg = [n for n, c in topology.components.items() if c.kind == "postgres"]
    etcd = [n for n, c in topology.components.items() if c.kind == "etcd"]
    kinds = [
        k
        for k in RANDOM_KINDS
        if (k.value.startswith("etcd") and etcd) or (not k.value.startswith("etcd") and pg)
    ]
    if not kinds:
        raise DrillError(
            f"{topology.source}: --random draws PostgreSQL and etcd faults; "
            "this topology has neither a postgres nor an etcd component"
        )
    phases = []
    for f in draw_schedule(seed, count, kinds):
        rng = random.Random(f.pick)
        spec = fault_spec(
            f, rng.choice(pg) if pg else "", rng.choice(etcd) if etcd else "", at=PHASE_LEAD
        )
        hold = f.pause_for
        phases.append(
            Phase(f"#{f.index} {f.kind}", (spec,), PHASE_LEAD + hold + SETTLE_AFTER, seed=f.pick)
        )
    return Plan("random", tuple(phases), default_traffic(topology), SteadyState(), None, {}, seed)


def default_traffic(topology: Topology) -> tuple[TrafficSpec, ...]:
    """One stream per entry component, as its clients reach it (see module docstring)."""
    out: list[TrafficSpec] = []
    for name in topology.entry:
        comp = topology.components[name]
        if comp.kind == "postgres":
            out.append(TrafficSpec.model_validate({"sql_writes": {"to": name}, "rate": 20}))
        elif comp.kind == "load_balancer":
            mode = getattr(comp, "mode", "http")
            routes = getattr(comp, "routes", [])
            to_pg = any(topology.components[r.to].kind == "postgres" for r in routes)
            if mode == "tcp" and to_pg:
                out.append(TrafficSpec.model_validate({"sql_writes": {"to": name}, "rate": 20}))
            elif mode == "http":
                out.append(
                    TrafficSpec.model_validate({"http": {"via": "lb", "to": name}, "rate": 20})
                )
            else:
                out.append(_tcp_probe(topology, name))
        elif getattr(comp, "port", None) is not None:
            out.append(_tcp_probe(topology, name))
    if not out:
        raise DrillError(
            f"{topology.source}: no traffic: give the scenario `traffic:`, or an entry "
            "component with a port"
        )
    return tuple(out)


def _tcp_probe(topology: Topology, name: str) -> TrafficSpec:
    # An HTTP-shaped probe would misjudge a non-HTTP server; a connection is what every
    # client of a port needs first.
    return TrafficSpec.model_validate({"tcp": {"to": name}, "rate": 20})
