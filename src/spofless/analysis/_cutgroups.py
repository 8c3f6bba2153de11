"""Minimal cut sets as an operator reads them: grouped by what they take down.

Three etcd members on hosts eu-2, us-2 and witness give 21 minimal cut sets of
two elements (two hosts, a host and another member's instance, a zone and a
region, ...). Listed one by one they hide the one fact that matters: etcd is
down when any 2 of its 3 members are. So cut sets that take down one
component, each of whose elements takes out exactly one of its instances, are
one line: "etcd: any 2 of its 3 instances (on eu-2, us-2, witness), each by
its instance, host, zone or region". Other cut sets of the same components
and kinds of element are one line when they are every k-subset of their
elements ("any 2 of hosts a, b, c"), else one line each. Text and Markdown
show the same lines, cut at the same count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import comb

# Both reports show at most this many lines of cut sets; `--format json` lists all.
MAX_CUT_SET_LINES = 20

_PLURAL = {"host": "hosts", "instance": "instances", "zone": "zones", "region": "regions"}


@dataclass(frozen=True, slots=True)
class CutSetLine:
    """One line of the cut-set section: what fails, and what it takes down."""

    components: tuple[str, ...]
    text: str  # "any 2 of hosts eu-2, us-2, witness" or "host:a + zone:eu/b"
    sets: int  # how many minimal cut sets the line stands for


def group_cut_sets(
    cut_sets: Sequence[tuple[str, ...]],
    taken_down: Sequence[tuple[str, ...]],
    covers: Callable[[str], Mapping[str, int]],
    placed_on: Mapping[str, Sequence[str]],
) -> list[CutSetLine]:
    """Cut sets of two or more elements as lines, in the order of their first set.

    `covers(element)` is how many instances of each component the element
    takes out; `placed_on[component]` names where each instance runs.
    """
    members: dict[str, list[tuple[str, ...]]] = {}
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[str, ...]]] = {}
    # Lines in the order of their first cut set: a component's name, or a group's key.
    order: list[str | tuple[tuple[str, ...], tuple[str, ...]]] = []
    for cut, comps in zip(cut_sets, taken_down, strict=True):
        if len(cut) < 2:
            continue
        if len(comps) == 1 and all(covers(e).get(comps[0]) == 1 for e in cut):
            if comps[0] not in members:
                order.append(comps[0])
            members.setdefault(comps[0], []).append(cut)
            continue
        group = (comps, tuple(e.partition(":")[0] for e in cut))
        if group not in groups:
            order.append(group)
        groups.setdefault(group, []).append(cut)
    out: list[CutSetLine] = []
    for key in order:
        if isinstance(key, str):
            cuts = members[key]
            k, n = len(cuts[0]), len(placed_on.get(key, ()))
            where = placed_on.get(key, ())
            on = f" (on {', '.join(where)})" if where and all(where) else ""
            which = (
                "both its"
                if k == n == 2
                else f"all {n} of its"
                if k == n
                else f"any {k} of its {n}"
            )
            text = f"{which} instances{on}, each by its instance"
            text += ", host, zone or region" if len(cuts) > comb(n, k) else ""
            out.append(CutSetLine((key,), text, len(cuts)))
            continue
        comps, kinds = key
        cuts = groups[key]
        elements = sorted({e for cut in cuts for e in cut})
        k = len(kinds)
        if len(set(kinds)) == 1 and len(cuts) > 1 and len(cuts) == comb(len(elements), k):
            names = ", ".join(e.partition(":")[2] for e in elements)
            out.append(CutSetLine(comps, f"any {k} of {_PLURAL[kinds[0]]} {names}", len(cuts)))
        else:
            out.extend(CutSetLine(comps, " + ".join(cut), 1) for cut in cuts)
    return out
