"""The examples, one per architecture of the reference material, and their expected findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.analysis import Report, analyze
from spofless.topology import load_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def report(name: str) -> Report:
    return analyze(load_topology(EXAMPLES / f"{name}.yaml"))


def spofs(r: Report) -> list[str]:
    return [s.element for s in r.spofs]


def test_single_server_and_database() -> None:
    r = report("single-server")
    assert spofs(r) == ["host:app-1", "host:db-1", "instance:db/0", "instance:web/0"]
    assert not r.ok and r.exact


def test_servers_behind_one_load_balancer() -> None:
    r = report("load-balanced")
    assert spofs(r) == ["host:db-1", "host:lb-1", "instance:db/0", "instance:lb/0"]
    # Three app servers: none of them, nor any pair, is a finding alone.
    assert not any(e.startswith("host:app") for e in spofs(r))
    fix = next(s for s in r.spofs if s.element == "host:lb-1")
    assert "add a second instance of lb" in fix.recommendation
    assert fix.availability_if_fixed > r.availability


def test_redundant_load_balancers_in_one_zone() -> None:
    r = report("redundant-lb")
    # Every host is redundant; what remains is the one zone (and its region).
    assert spofs(r) == ["region:eu-west", "zone:eu-west/a"]
    assert ("host:node-1", "host:node-2") in r.cut_sets
    zone = next(s for s in r.spofs if s.element == "zone:eu-west/a")
    assert "spread" in zone.recommendation
    assert zone.availability_if_fixed > r.availability


def test_three_zones() -> None:
    r = report("three-zones")
    assert spofs(r) == ["region:eu-west"]
    assert ("zone:eu-west/a", "zone:eu-west/b") in r.cut_sets


def test_two_regions_behind_dns() -> None:
    r = report("two-regions")
    assert r.ok and r.exact
    assert r.availability > report("three-zones").availability
    assert ("region:eu-west", "region:us-east") in r.cut_sets


def test_cache_tier_scaled_horizontally() -> None:
    r = report("cache-tier")
    assert r.ok
    # Four of eight cache nodes must stay up: one host and a region together are too many.
    assert ("host:node-1", "region:eu-central") in r.cut_sets
    assert r.component("cache").min_up == 4


def test_demo_is_free_of_spofs() -> None:
    r = report("demo")
    assert r.ok and r.exact
    assert r.downtime_minutes_per_year < 60


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    r = analyze(load_topology(path))
    assert 0 < r.availability <= 1


# Every other example is meant to be run (`spofless up` refuses a topology with a single
# point of failure), so each of them must have none.
TEACHING_EXAMPLES = {"single-server", "load-balanced", "redundant-lb", "three-zones"}


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in EXAMPLES.glob("*.yaml") if p.stem not in TEACHING_EXAMPLES)
)
def test_runnable_examples_have_no_single_point_of_failure(name: str) -> None:
    r = report(name)
    assert r.ok, spofs(r)
