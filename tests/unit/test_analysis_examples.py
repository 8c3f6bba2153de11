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
    assert (
        fix.recommendation == "add host lb-2 (a machine of its own), with a second instance of lb"
    )
    assert fix.availability_if_fixed > r.availability
    # One finding per root cause: the host and the instance of lb are one.
    assert [f.title for f in r.findings] == [
        "db has a single instance",
        "lb has a single instance",
    ]
    assert r.findings[0].elements == ("host:db-1", "instance:db/0")


def test_redundant_load_balancers_in_one_zone() -> None:
    r = report("redundant-lb")
    # Every host is redundant; what remains is the one zone (and its region).
    assert spofs(r) == ["region:eu-west", "zone:eu-west/a"]
    assert ("host:node-1", "host:node-2") in r.cut_sets
    zone = next(f for f in r.findings if f.elements == ("zone:eu-west/a",))
    assert zone.title == "every instance of etcd, db, web and vip is in zone eu-west/a"
    # Dedicated hosts named for their component, in new zones named like eu-west/a.
    assert zone.fix[0] == "move etcd/0 to a new host etcd-4 in zone eu-west/b (a new zone)"
    assert zone.fix[1] == "move etcd/1 to a new host etcd-5 in zone eu-west/c (a new zone)"
    assert zone.availability_if_fixed > r.availability
    assert r.availability_after_fixes is not None
    assert r.availability_after_fixes > zone.availability_if_fixed
    assert r.remaining_after_fixes == ()


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


EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_fixes_read_like_an_operators(name: str) -> None:
    """Every example's fixes: short lines, dedicated hosts named for their component,
    no co-located tiers, plain zone names, one finding per cause, nothing left after all."""
    import re

    topology = load_topology(EXAMPLES / f"{name}.yaml")
    r = analyze(topology)
    assert sorted({e for f in r.findings for e in f.elements}) == spofs(r)
    assert len({f.title for f in r.findings}) == len(r.findings)
    for f in r.findings:
        for line in (f.title, *f.fix, *f.steps):
            assert len(line) <= 90, line
        for host in re.findall(
            r"new host (\S+)|add hosts? ([\w, -]+?)(?: in| \(|,)", " ".join(f.fix)
        ):
            for h in ",".join(host).replace(" ", "").split(","):
                if h:
                    assert any(h.startswith(c + "-") for c in f.components), (h, f.fix)
        for zone in re.findall(r"zones? ([\w/-]+)", " ".join(f.fix)):
            region, _, z = zone.partition("/")
            assert re.fullmatch(r"[a-z0-9]", z) and "-b" not in region, zone
    if r.findings:
        assert r.remaining_after_fixes == ()
        assert r.availability_after_fixes is not None
        assert r.availability_after_fixes >= max(f.availability_if_fixed for f in r.findings)
    else:
        assert r.availability_after_fixes is None


@pytest.mark.parametrize("name", ["single-server", "load-balanced", "redundant-lb", "three-zones"])
def test_no_fix_co_locates_two_tiers(name: str) -> None:
    from spofless.analysis._cutsets import CutSetSearch
    from spofless.analysis._recommend import causes, fixes
    from spofless.analysis._structure import compile_structure

    topology = load_topology(EXAMPLES / f"{name}.yaml")
    structure = compile_structure(topology)
    search = CutSetSearch(structure)
    applied, together = fixes(topology, structure, causes(structure, search, search.spofs()))
    for data in (*(f.data for f in applied), together.data):
        placed: dict[str, set[str]] = {}
        for cname, comp in data["components"].items():
            for host in comp["instances"]:
                placed.setdefault(host, set()).add(cname)
        for host, comps in placed.items():
            if host not in topology.hosts:
                assert len(comps) == 1, (host, comps)


def test_a_second_postgres_instance_brings_etcd() -> None:
    r = report("single-server")
    db = next(f for f in r.findings if f.components == ("db",))
    assert db.fix == ("add host db-2 (a machine of its own), with a second instance of db",)
    assert db.steps[0] == "db: the new instance is a streaming replica; failover needs a quorum"
    assert (
        "add etcd: 3 members on hosts etcd-1, etcd-2, etcd-3, and `needs: [etcd]` to db" in db.steps
    )
    # The etcd it adds is part of the figure: it is no new single point of failure.
    assert r.remaining_after_fixes == ()


def test_a_region_fix_names_a_plain_new_region() -> None:
    r = report("three-zones")
    (region,) = r.findings
    assert region.title == "every instance of etcd, db, web and vip is in region eu-west"
    assert "move db/0 to a new host db-4 in zone region-2/a (a new region)" in region.fix
    # etcd's majority needs its members in three regions.
    assert "move etcd/1 to a new host etcd-5 in zone region-3/a (a new region)" in region.fix


def test_a_second_postgres_instance_uses_the_etcd_there_is() -> None:
    from spofless.topology import load_topology_text

    r = analyze(
        load_topology_text(
            "name: t\nhosts: {a: {}, b: {}, c: {}, d: {}}\ncomponents:\n"
            "  db: {kind: postgres, instances: [a], needs: [coord]}\n"
            "  coord: {kind: etcd, instances: [b, c, d], min_up: majority}\nentry: [db]\n"
        )
    )
    (db,) = r.findings
    assert db.fix == ("add host db-2 (a machine of its own), with a second instance of db",)
    assert db.steps == ("db: the new instance is a streaming replica; coord decides the failover",)
