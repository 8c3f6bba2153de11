"""The order of a rollout and what each step costs the system: pure, no I/O.

    plan_rollout(topology, "web", roles={}) -> RolloutPlan

One instance is out at a time. Before anything moves, each step is checked on
the analysis (spofless.analysis): with that instance out, does a component go
down (below `min_up`), and which elements become single points of failure that
were not? A step that opens either is refused unless the user allows it.

The order follows the roles the running system reports, so that the member
everything leans on moves last and is handed over first:
- postgres: replicas first, then a switchover away from the primary, then the
  old primary (now a replica);
- etcd: followers first, the leader last;
- a load balancer with a floating address: standbys first, then the holder's
  VIP agent restarts (releasing the address to a standby), then the holder;
- anything else: by index.

With `surge` (kind service), temporary instances come first: each starts on the
host where the component runs least, numbered after the file's instances
(`web/2` beside `web/0` and `web/1`); the steps are judged with them counted, so a
2-instance component loses no redundancy while one is out; they are removed
(drained first) at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Literal

from spofless.analysis import compile_structure
from spofless.analysis._cutsets import CutSetSearch
from spofless.topology import Topology, topology_from_data

__all__ = ["RolloutPlan", "Step", "plan_rollout"]

# The role that moves last, per kind (as `spofless status` reports roles).
_LAST_ROLE = {"postgres": "primary", "etcd": "leader", "load_balancer": "vip-holder"}


@dataclass(frozen=True, slots=True)
class Step:
    """One instance replaced, or (postgres) the switchover before its primary is, or
    (`--surge`) a temporary instance started or removed."""

    instance: str  # web/0
    action: Literal["replace", "switchover", "handover", "surge", "unsurge"] = "replace"
    down: tuple[str, ...] = ()  # components that go down while it is out
    new_spofs: tuple[str, ...] = ()  # elements that become single points of failure
    repairs: bool = False  # it is not doing its job now: replacing it takes nothing away
    host: str | None = None  # surge: where the temporary instance runs

    @property
    def opens_spof(self) -> bool:
        """Whether the step takes redundancy away (a surge step never does: what it
        removes last was added for the rollout)."""
        return bool(self.down or self.new_spofs)

    def describe(self) -> str:
        if self.action == "switchover":
            return f"switch over: {self.instance} hands the primary role to a replica"
        if self.action == "handover":
            return f"hand over: {self.instance} gives the floating address to a standby"
        where = f" on {self.host}" if self.host else ""
        if self.action == "surge":
            return (
                f"surge: start {self.instance}{where}, a temporary instance on a free port, "
                "added to the load balancers once healthy"
            )
        if self.action == "unsurge":
            return f"remove {self.instance}{where}: drained first, then stopped"
        what = f"replace {self.instance}"
        if self.repairs:
            return f"{what}: it is not doing its job now, so it goes first"
        if self.down:
            return f"{what}: {', '.join(self.down)} goes down while it is out"
        if len(self.new_spofs) == 1:
            return f"{what}: while it is out, {self.new_spofs[0]} is a single point of failure"
        if self.new_spofs:
            each = ", ".join(self.new_spofs)
            return f"{what}: while it is out, each of {each} is a single point of failure"
        return f"{what}: no single point of failure while it is out"


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    component: str
    steps: tuple[Step, ...]

    @property
    def refusals(self) -> tuple[Step, ...]:
        """The steps that open a single point of failure (refused without --allow-spof)."""
        return tuple(s for s in self.steps if s.opens_spof)


def plan_rollout(
    topology: Topology,
    component: str,
    roles: Mapping[str, str | None],
    down: Set[str] = frozenset(),
    surge: int = 0,
) -> RolloutPlan:
    """The steps of a rollout of `component`, in order, each with what it opens.

    `roles` maps instance names to the role the running system reports (primary,
    replica, leader, vip-holder, ...); an instance without one moves by index.
    Instances in `down` (not doing their job now) go first: replacing them takes
    nothing away, and the others wait until they are whole again. `surge`
    temporary instances start before and go after (see the module docstring)."""
    comp = topology.components[component]
    names = [i.name for i in topology.instances[component]]
    surges = surge_instances(topology, component, surge)
    if surges:
        topology = _with_instances(topology, component, [h for _, h in surges])
    last = _LAST_ROLE.get(comp.kind)
    broken = [n for n in names if n in down]
    movers = [n for n in names if n not in down and (last is None or roles.get(n) != last)]
    leaders = [n for n in names if n not in down and last is not None and roles.get(n) == last]
    search = CutSetSearch(compile_structure(topology))
    steps: list[Step] = [Step(name, "surge", host=host) for name, host in surges]
    steps += [Step(name, repairs=True) for name in broken]
    for name in movers + leaders:
        if comp.kind == "postgres" and name in leaders and len(names) > 1:
            steps.append(Step(name, "switchover"))
        if comp.kind == "load_balancer" and name in leaders and len(names) > 1:
            steps.append(Step(name, "handover"))
        steps.append(_step(search, name))
    steps += [Step(name, "unsurge", host=host) for name, host in surges]
    return RolloutPlan(component, tuple(steps))


def surge_instances(topology: Topology, component: str, n: int) -> list[tuple[str, str | None]]:
    """The names and hosts of `n` temporary instances of `component`: numbered after its
    instances, each on the host where it then runs least (the file's order breaks ties;
    None when its instances have no host)."""
    insts = topology.instances[component]
    load = dict.fromkeys(topology.hosts, 0)
    for i in insts:
        if i.host is not None:
            load[i.host] += 1
    out: list[tuple[str, str | None]] = []
    for k in range(n):
        host = min(load, key=lambda h: load[h]) if load and insts[0].host else None
        if host is not None:
            load[host] += 1
        out.append((f"{component}/{len(insts) + k}", host))
    return out


def _with_instances(topology: Topology, component: str, hosts: list[str | None]) -> Topology:
    """`topology` with more instances of `component` on `hosts` (for the analysis only)."""
    data = copy.deepcopy(dict(topology.data))
    comp = data["components"][component]
    current = comp.get("instances", 1)
    if isinstance(current, int):
        comp["instances"] = current + len(hosts)
    else:
        comp["instances"] = [*current, *hosts]
    return topology_from_data(data, topology.source)


def _step(search: CutSetSearch, name: str) -> Step:
    out = f"instance:{name}"
    needs = search.structure.needs
    if out not in search.covers:
        return Step(name)  # not part of what the entry components need
    down = tuple(needs[c].name for c in search.cuts([out]))
    if down:
        return Step(name, down=down)
    already = set(search.spofs())
    new = {
        e
        for e in search.covers
        if e != out
        and e not in already
        and out not in search.ancestors[e]  # below it: out with it already
        and e not in search.ancestors[out]  # above it: fails alone as it did before
        and search.cuts([out, e])
    }
    # The deepest elements only: a host is implied by the instance below it.
    deepest = {e for e in new if not any(e in search.ancestors[f] for f in new)}
    return Step(name, new_spofs=tuple(sorted(_short(e) for e in deepest)))


def _short(element: str) -> str:
    """`instance:etcd/1` -> `etcd/1`; other elements keep their kind (`host:node-2`)."""
    return element.removeprefix("instance:")
