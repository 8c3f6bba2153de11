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

from dataclasses import dataclass

from spofless.analysis._structure import Structure, Unit

State = tuple[int, ...]
Dist = dict[State, float]

# Pruning starts only above this many states, so small topologies stay exact.
PRUNE_ABOVE = 2_000
# States below this probability go first; their mass bounds the error.
PRUNE_EPSILON = 1e-18
# Hard cap on the number of states kept: raise the threshold until under it.
MAX_STATES = 100_000


@dataclass(frozen=True, slots=True)
class AvailabilityResult:
    """Availability of a structure: up in [up, up + pruned], down in [down, down + pruned]."""

    up: float
    down: float
    pruned: float
    importance: dict[str, float]

    @property
    def exact(self) -> bool:
        return self.pruned == 0.0

    @property
    def availability(self) -> float:
        """The middle of the interval (the exact value when nothing was pruned)."""
        return self.up + self.pruned / 2

    @property
    def unavailability(self) -> float:
        return self.down + self.pruned / 2

    @property
    def error(self) -> float:
        """Half-width of the interval: an absolute bound on the error of `availability`."""
        return self.pruned / 2


class _Dp:
    def __init__(self, structure: Structure) -> None:
        self.required = tuple(n.required for n in structure.needs)
        self.remaining = [n.count for n in structure.needs]
        self.down = 0.0
        self.pruned = 0.0
        self.entering: dict[int, Dist] = {}  # id(unit) -> distribution entering it
        self.rem_after: dict[int, tuple[tuple[int, int], ...]] = {}

    # -- forward --------------------------------------------------------------

    def forward(self, unit: Unit, dist: Dist) -> Dist:
        self.entering[id(unit)] = dist
        p = unit.availability
        q = 1.0 - p
        if unit.component >= 0:
            c = unit.component
            need = self.required[c]
            self.remaining[c] -= 1
            rem = self.remaining[c]
            self.rem_after[id(unit)] = ((c, rem),)
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
            return self._prune(out)
        up_dist: Dist = {s: pr * p for s, pr in dist.items()}
        for child in unit.children:
            up_dist = self.forward(child, up_dist)
        checks = tuple((c, self.remaining[c]) for c in unit.covers)
        self.rem_after[id(unit)] = checks
        out = up_dist
        for s, pr in dist.items():
            if all(s[c] + rem >= self.required[c] for c, rem in checks):
                out[s] = out.get(s, 0.0) + pr * q
            else:
                self.down += pr * q
        return self._prune(out)

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


def compute_availability(structure: Structure, importance: bool = True) -> AvailabilityResult:
    """The exact (or rigorously bounded) availability of `structure`, with importances."""
    dp = _Dp(structure)
    root = Unit("<system>", 1.0, children=list(structure.roots))
    for need in structure.needs:
        root.covers[need.index] = need.count
    start: State = tuple(0 for _ in structure.needs)
    final = dp.forward(root, {start: 1.0})
    up = sum(final.values())
    scores: dict[str, float] = {}
    if importance:
        # Every surviving state at the end has every component at its required count.
        dp.backward(root, dict.fromkeys(final, 1.0), scores)
        scores.pop("<system>", None)
    # Rounding can leave up + down a hair off 1; the smaller side is the accurate one.
    return AvailabilityResult(up=up, down=dp.down, pruned=dp.pruned, importance=scores)
