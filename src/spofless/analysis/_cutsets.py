"""Single points of failure and minimal cut sets, by counting.

A set of elements is a cut when, for some required component, the instances
it covers (an element covers the instances below it in the failure tree)
leave fewer than `required` of them: when it covers more than the
component's tolerance. A minimal cut set is an antichain of the tree (an
element under another adds nothing), and every element of it covers some
instance of the component it cuts (otherwise dropping that element would
leave a cut). So minimal cut sets are searched per component, among the
elements covering it, largest coverage first, never over all pairs of
elements. Elements of an antichain cover disjoint instances: coverages add.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from spofless.analysis._structure import Structure


class CutSetSearch:
    """Minimal cut sets of a structure up to a given size."""

    def __init__(self, structure: Structure) -> None:
        self.structure = structure
        self.units = list(structure.units())
        self.tolerance = [n.tolerance for n in structure.needs]
        self.ancestors = {u.element: {a.element for a in u.ancestors()} for u in self.units}
        self.covers = {u.element: u.covers for u in self.units}

    def cuts(self, elements: Iterable[str]) -> list[int]:
        """The components (indices) that failing all of `elements` takes down."""
        total: dict[int, int] = {}
        for e in elements:
            for c, n in self.covers[e].items():
                total[c] = total.get(c, 0) + n
        return sorted(c for c, n in total.items() if n > self.tolerance[c])

    def spofs(self) -> list[str]:
        """Elements whose failure alone takes the system down, sorted."""
        return sorted(
            u.element for u in self.units if any(n > self.tolerance[c] for c, n in u.covers.items())
        )

    def minimal_cut_sets(self, max_order: int) -> list[tuple[str, ...]]:
        """All minimal cut sets of at most `max_order` elements, sorted by size then name."""
        found: set[tuple[str, ...]] = {(e,) for e in self.spofs()}
        spofs = {e for (e,) in found}
        if max_order >= 2:
            for need in self.structure.needs:
                candidates = sorted(
                    (
                        (u.covers[need.index], u.element)
                        for u in self.units
                        if need.index in u.covers and u.element not in spofs
                    ),
                    key=lambda t: (-t[0], t[1]),
                )
                self._search(need.index, candidates, max_order, found)
        return sorted(found, key=lambda s: (len(s), s))

    def _search(
        self,
        component: int,
        candidates: Sequence[tuple[int, str]],
        max_order: int,
        found: set[tuple[str, ...]],
    ) -> None:
        threshold = self.tolerance[component] + 1
        chosen: list[str] = []

        def extend(start: int, covered: int) -> None:
            slots = max_order - len(chosen)
            for i in range(start, len(candidates)):
                cov, element = candidates[i]
                # Sorted by coverage, largest first: the best this branch can reach.
                if covered + cov * slots < threshold:
                    return
                lineage = self.ancestors[element]
                if any(element in self.ancestors[x] or x in lineage for x in chosen):
                    continue
                chosen.append(element)
                if covered + cov >= threshold:
                    if len(chosen) >= 2 and self._minimal(chosen):
                        found.add(tuple(sorted(chosen)))
                elif slots > 1 and not self.cuts(chosen):
                    extend(i + 1, covered + cov)
                chosen.pop()

        extend(0, 0)

    def _minimal(self, elements: Sequence[str]) -> bool:
        """No element can be dropped with the rest still a cut (of any component)."""
        return all(not self.cuts([x for x in elements if x != e]) for e in elements)
