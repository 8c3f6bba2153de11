"""Property tests: the analysis agrees with brute force on random small topologies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spofless.analysis import analyze, compile_structure, compute_availability
from spofless.analysis._cutsets import CutSetSearch
from spofless.analysis._recommend import causes, fixes
from spofless.topology import Topology, topology_from_data
from tests.unit import analysis_bruteforce as brute

PROBS = st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99, 1.0, 0.7, 0.999])


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    regions: dict[str, Any] = {}
    zones: list[str] = []
    for r in range(draw(st.integers(0, 2))):
        zs = [f"z{i}" for i in range(draw(st.integers(1, 2)))]
        regions[f"r{r}"] = {"zones": {z: {"availability": draw(PROBS)} for z in zs}}
        regions[f"r{r}"]["availability"] = draw(PROBS)
        zones.extend(f"r{r}/{z}" for z in zs)
    hosts: dict[str, Any] = {}
    for h in range(draw(st.integers(0, 3))):
        spec: dict[str, Any] = {"availability": draw(PROBS)}
        if zones and draw(st.booleans()):
            spec["zone"] = draw(st.sampled_from(zones))
        hosts[f"h{h}"] = spec
    components: dict[str, Any] = {}
    n_components = draw(st.integers(1, 3))
    for c in range(n_components):
        if hosts and draw(st.integers(0, 3)) > 0:
            instances: Any = draw(st.lists(st.sampled_from(sorted(hosts)), min_size=1, max_size=3))
            count = len(instances)
        else:
            instances = count = draw(st.integers(1, 2))
        min_up: Any = draw(st.sampled_from(["majority", *range(1, count + 1)]))
        needs = (
            draw(st.lists(st.sampled_from([f"c{i}" for i in range(c)]), unique=True)) if c else []
        )
        components[f"c{c}"] = {
            "kind": draw(st.sampled_from(["service", "etcd", "queue"])),
            "instances": instances,
            "min_up": min_up,
            "needs": needs,
            "availability": draw(PROBS),
        }
    entry = draw(st.lists(st.sampled_from(sorted(components)), min_size=1, unique=True))
    return {
        "name": "random",
        "regions": regions,
        "hosts": hosts,
        "components": components,
        "entry": entry,
    }


def _topology(data: dict[str, Any]) -> Topology:
    topology = topology_from_data(data)
    assume(brute.element_count(topology) <= 11)
    return topology


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


@SETTINGS
@given(topologies())
def test_availability_matches_brute_force(data: dict[str, Any]) -> None:
    topology = _topology(data)
    report = analyze(topology)
    assert report.exact
    assert report.availability == pytest.approx(brute.availability(topology), abs=1e-9)
    assert report.unavailability == pytest.approx(1 - brute.availability(topology), abs=1e-9)


@SETTINGS
@given(topologies(), st.integers(1, 3))
def test_cut_sets_and_spofs_match_brute_force(data: dict[str, Any], max_order: int) -> None:
    topology = _topology(data)
    report = analyze(topology, max_order=max_order)
    expected = brute.minimal_cut_sets(topology, max_order)
    assert [list(c) for c in report.cut_sets] == [list(c) for c in expected]
    assert [s.element for s in report.spofs] == brute.spofs(topology)
    assert report.ok == (not brute.spofs(topology))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(topologies())
def test_importance_matches_brute_force(data: dict[str, Any]) -> None:
    topology = _topology(data)
    scores = compute_availability(compile_structure(topology)).importance
    for element in topology.elements():
        expected = brute.birnbaum(topology, element)
        assert scores.get(element, 0.0) == pytest.approx(expected, abs=1e-9), element


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(topologies())
def test_every_recommendation_removes_its_spof(data: dict[str, Any]) -> None:
    topology = _topology(data)
    structure = compile_structure(topology)
    search = CutSetSearch(structure)
    spofs = search.spofs()
    if not spofs:
        return
    found = causes(structure, search, spofs)
    # Every single point of failure has a cause, and only one of each kind.
    assert sorted({e for c in found for e in c.elements}) == spofs
    applied, together = fixes(topology, structure, found)
    for fix in applied:
        fixed = topology_from_data(fix.data)
        # None of its elements takes down any of its components any more (an element
        # shared with another cause may still take down that one's).
        after = compile_structure(fixed)
        cuts = CutSetSearch(after)
        for element in fix.cause.elements:
            down = {after.needs[c].name for c in cuts.cuts([element])}
            assert not down & {n.name for n in fix.cause.needs}, (fix.lines, element)
        assert fix.availability_if_fixed == pytest.approx(
            compute_availability(compile_structure(fixed)).availability, abs=1e-12
        )
    # All fixes together leave no single point of failure.
    assert together.remaining == ()
    assert not analyze(topology_from_data(together.data), max_order=1).spofs
