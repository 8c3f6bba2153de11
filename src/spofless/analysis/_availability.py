"""Exact system availability and Birnbaum importance by a DP over the failure tree.

Elements fail independently. The DP walks the failure tree depth first
(region, its zones, their hosts, their instances). Its state is the vector of
the required components' up-counts so far, each capped at the component's
`required` (more ups change nothing). A component whose count can no longer
reach `required` with the instances still to come is dead: that state's mass
is system-down and leaves the DP. When the tree is done every surviving state
is a system-up state.

An element's failure changes no count (its instances simply never add one),
so a subtree's "down" branch is the identity on states and only its "up"
branch descends. The forward pass records the distribution entering every
element; a backward pass computes, for each state there, the probability that
the system ends up given that state. From the two, each element's Birnbaum
importance P(up | e up) - P(up | e down) follows in one sweep.

States whose probability is negligible are pruned only when there are many
of them; their total mass is kept, so the result is a rigorous interval
[P_found, P_found + pruned] and exact when nothing was pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from spofless.analysis._structure import Structure, Unit

State = tuple[int, ...]
Dist = dict[State, float]

# Pruning starts only above this many states, so small topologies stay exact.
PRUNE_ABOVE = 2_000
# States below this probability go first; their mass bounds the error.
PRUNE_EPSILON = 1e-18
# Hard cap on the number of states kept: raise the threshold until under it.
MAX_STATES = 3_000


@dataclass(frozen=True, slots=True)
class AvailabilityResult:
    """P(system up) in [up_low, up_high] and P(down) in [down_low, down_high], rigorously.

    Both intervals are the same interval seen from each side; the down side is
    kept separately because small probabilities of failure are accurate there.
    """

    up_low: float
    up_high: float
    down_low: float
    down_high: float
    importance: dict[str, float]
    exact: bool

    @property
    def availability(self) -> float:
        """The middle of the interval (the exact value when exact)."""
        return (self.up_low + self.up_high) / 2

    @property
    def unavailability(self) -> float:
        return (self.down_low + self.down_high) / 2

    @property
    def error(self) -> float:
        """Half-width of the interval: an absolute bound on the error of `availability`."""
        return 0.0 if self.exact else (self.up_high - self.up_low) / 2


class _Dp:
    def __init__(self, structure: Structure) -> None:
        self.required = tuple(n.required for n in structure.needs)
        self.remaining = [n.count for n in structure.needs]
        self.down = 0.0
        self.pruned = 0.0
        self.entering: dict[int, Dist] = {}  # id(unit) -> distribution entering it
        self.skipped: set[int] = set()

    # -- forward --------------------------------------------------------------

    def forward(self, unit: Unit, dist: Dist, sat: frozenset[int]) -> tuple[Dist, frozenset[int]]:
        """The distribution after `unit`, and the components at their required count in
        every state of it (`sat`: a unit touching only those cannot matter and is skipped)."""
        self.entering[id(unit)] = dist
        if sat.issuperset(unit.covers):
            self.skipped.add(id(unit))
            for c, n in unit.covers.items():
                self.remaining[c] -= n
            return dist, sat
        p = unit.availability
        q = 1.0 - p
        if unit.component >= 0:
            c = unit.component
            need = self.required[c]
            self.remaining[c] -= 1
            rem = self.remaining[c]
            out: Dist = {}
            for s, pr in dist.items():
                if s[c] >= need:
                    out[s] = out.get(s, 0.0) + pr
                    continue
                if s[c] + rem >= need:
                    out[s] = out.get(s, 0.0) + pr * q
                else:
                    self.down += pr * q
                up = (*s[:c], s[c] + 1, *s[c + 1 :])
                out[up] = out.get(up, 0.0) + pr * p
            out = self._prune(out)
            return out, self._saturated(out, sat, (c,))
        up_dist: Dist = {s: pr * p for s, pr in dist.items()}
        up_sat = sat
        for child in unit.children:
            up_dist, up_sat = self.forward(child, up_dist, up_sat)
        checks = tuple((c, self.remaining[c]) for c in unit.covers)
        out = up_dist
        for s, pr in dist.items():
            if all(s[c] + rem >= self.required[c] for c, rem in checks):
                out[s] = out.get(s, 0.0) + pr * q
            else:
                self.down += pr * q
        out = self._prune(out)
        return out, self._saturated(out, sat, [c for c in unit.covers if c not in sat])

    def _saturated(
        self, dist: Dist, sat: frozenset[int], candidates: Iterable[int]
    ) -> frozenset[int]:
        new = [c for c in candidates if all(s[c] >= self.required[c] for s in dist)]
        return sat.union(new) if new else sat

    def _prune(self, dist: Dist) -> Dist:
        if len(dist) <= PRUNE_ABOVE:
            return dist
        eps = PRUNE_EPSILON
        while True:
            kept = {s: pr for s, pr in dist.items() if pr >= eps}
            if len(kept) < len(dist):
                self.pruned += sum(pr for pr in dist.values() if pr < eps)
                dist = kept
            if len(dist) <= MAX_STATES:
                return dist
            eps *= 100

    # -- backward -------------------------------------------------------------

    def backward(self, unit: Unit, after: Dist, importance: dict[str, float]) -> Dist:
        """Values entering `unit` from the values after it; records its importance."""
        if id(unit) in self.skipped:
            importance[unit.element] = 0.0
            for sub in unit.walk():
                importance[sub.element] = 0.0
            return after
        dist = self.entering[id(unit)]
        p = unit.availability
        q = 1.0 - p
        before: Dist = {}
        gain = 0.0
        if unit.component >= 0:
            c = unit.component
            need = self.required[c]
            for s, pr in dist.items():
                v_down = after.get(s, 0.0)
                if s[c] >= need:
                    before[s] = v_down
                    continue
                v_up = after.get((*s[:c], s[c] + 1, *s[c + 1 :]), 0.0)
                before[s] = q * v_down + p * v_up
                gain += pr * (v_up - v_down)
        else:
            values = after
            for child in reversed(unit.children):
                values = self.backward(child, values, importance)
            for s, pr in dist.items():
                v_up = values.get(s, 0.0)
                v_down = after.get(s, 0.0)
                before[s] = q * v_down + p * v_up
                gain += pr * (v_up - v_down)
        importance[unit.element] = gain
        return before


# Above this many elements, components whose DP state would be wide (more than
# LIGHT_STATES values of their up-count) are bounded instead of tracked jointly.
SPLIT_ABOVE = 2_000
LIGHT_STATES = 4


def compute_availability(structure: Structure, importance: bool = True) -> AvailabilityResult:
    """The availability of `structure`, exact or as a rigorous interval, with importances.

    Small structures, and large ones whose components all have narrow states,
    get the joint DP (exact unless states were pruned). In a large structure
    with wide components (say 67 of 100 instances needed), those are taken out
    of the joint DP: the events "component up" all increase with the elements'
    states, so by the Harris (FKG) inequality P(all up) >= P(rest up) x
    prod P(wide c up), while P(all up) <= P(rest up). Their exact marginals come
    from one small DP each.
    """
    units = sum(1 for _ in structure.units())
    wide = [
        n.index
        for n in structure.needs
        if units > SPLIT_ABOVE and min(n.required, n.tolerance + 1) > LIGHT_STATES
    ]
    if not wide:
        return _joint(structure, importance)
    narrow = [n.index for n in structure.needs if n.index not in wide]
    rest = _joint(structure.restricted_to(narrow), importance) if narrow else None
    alone = [_joint(structure.restricted_to([c]), importance) for c in wide]
    # P(every wide component up) >= prod of their lower bounds; its complement, accurately.
    wide_down = -math.expm1(sum(math.log1p(-a.down_high) for a in alone))
    rest_up_low, rest_up_high = (rest.up_low, rest.up_high) if rest else (1.0, 1.0)
    rest_down_low, rest_down_high = (rest.down_low, rest.down_high) if rest else (0.0, 0.0)
    scores: dict[str, float] = {}
    if importance:
        # Importance in the product form of the lower bound (approximate where components
        # share elements): d/dp_e of P(rest) x prod P(c).
        wide_up = 1.0 - wide_down
        for part in [*([rest] if rest else []), *alone]:
            part_up = part.availability
            others = rest_up_low * wide_up / part_up if part_up > 0 else 0.0
            for element, score in part.importance.items():
                scores[element] = scores.get(element, 0.0) + score * others
    return AvailabilityResult(
        up_low=rest_up_low * (1.0 - wide_down),
        up_high=rest_up_high,
        down_low=rest_down_low,
        down_high=rest_down_high + rest_up_low * wide_down,
        importance=scores,
        exact=False,
    )


def _joint(structure: Structure, importance: bool) -> AvailabilityResult:
    """The joint DP over every component of `structure`."""
    dp = _Dp(structure)
    root = Unit("<system>", 1.0, children=list(structure.roots))
    for need in structure.needs:
        root.covers[need.index] = need.count
    start: State = tuple(0 for _ in structure.needs)
    final, _ = dp.forward(root, {start: 1.0}, frozenset())
    up = sum(final.values())
    scores: dict[str, float] = {}
    if importance:
        # Every surviving state at the end has every component at its required count.
        dp.backward(root, dict.fromkeys(final, 1.0), scores)
        scores.pop("<system>", None)
    return AvailabilityResult(
        up_low=up,
        up_high=up + dp.pruned,
        down_low=dp.down,
        down_high=dp.down + dp.pruned,
        importance=scores,
        exact=dp.pruned == 0.0,
    )
