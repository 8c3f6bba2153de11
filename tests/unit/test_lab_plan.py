"""The lab's pure plan: names, addresses, links, the lab topology, the state round trip."""

from __future__ import annotations

import ipaddress

import pytest

from spofless.lab import (
    DEFAULT_HOST,
    Impairment,
    LabError,
    LabPlan,
    LabState,
    lab_id_for_path,
    lab_topology,
    plan_lab,
)
from spofless.lab._faults import parse_element
from spofless.lab._plan import IFNAMSIZ, RESERVED_TOP
from spofless.topology import TopologyError, load_topology_text

BASE = """
name: t
regions:
  eu: {zones: [a, b]}
  us: {zones: [a]}
hosts:
  h1: {zone: eu/a}
  h2: {zone: eu/a}
  h3: {zone: eu/b}
  h4: {zone: us/a}
  loose: {}
components:
  web: {kind: service, instances: [h1, h3, h4], port: 8000}
  cache: {kind: service, instances: 2, port: 9000}
entry: [web]
"""


def topo(extra: str = "", base: str = BASE) -> object:
    return load_topology_text(base + extra, source="/srv/t.yaml")


def test_names_are_short_unique_and_carry_the_lab_id() -> None:
    plan = plan_lab(topo(), "abc123")
    switch = [*plan.bridges, *(h.port for h in plan.hosts.values())]
    switch += [n for lk in plan.links for n in (lk.lower, lk.upper)]
    assert len(set(switch)) == len(switch)
    assert all(len(n) <= IFNAMSIZ for n in [*switch, *plan.namespaces])
    assert all(n.startswith("spfabc123-") for n in plan.namespaces)
    assert len(set(plan.namespaces)) == len(plan.namespaces) == len(plan.hosts) + 2
    other = plan_lab(topo(), "def456")
    assert not set(plan.namespaces) & set(other.namespaces)


def test_lab_id_follows_the_file_path() -> None:
    assert lab_id_for_path("/a/t.yaml") == lab_id_for_path("/a/../a/t.yaml")
    assert lab_id_for_path("/a/t.yaml") != lab_id_for_path("/b/t.yaml")
    assert plan_lab(topo()).lab_id == lab_id_for_path("/srv/t.yaml")
    with pytest.raises(LabError, match="letters or digits"):
        plan_lab(topo(), "bad-id")


def test_addresses_come_from_the_subnet_in_file_order() -> None:
    plan = plan_lab(topo(), "x")
    addrs = [h.address for h in plan.hosts.values()]
    assert addrs == [f"10.77.0.{10 + i}" for i in range(6)]
    assert list(plan.hosts) == ["h1", "h2", "h3", "h4", "loose", DEFAULT_HOST]
    free = plan.free_addresses()
    assert plan.control is not None and plan.control.address == "10.77.255.254"
    assert len(free) == RESERVED_TOP - 1 and "10.77.255.253" in free
    assert not set(free) & {*addrs, plan.control.address}
    custom = plan_lab(topo("lab: {subnet: 192.168.50.0/24}\n"), "x")
    assert all(
        ipaddress.IPv4Address(h.address) in ipaddress.IPv4Network("192.168.50.0/24")
        for h in custom.hosts.values()
    )


def test_a_too_small_subnet_is_refused() -> None:
    hosts = "".join(f"  x{i}: {{}}\n" for i in range(40))
    text = BASE.replace("  loose: {}\n", "  loose: {}\n" + hosts) + "lab: {subnet: 10.1.2.0/26}\n"
    with pytest.raises(LabError, match="too small"):
        plan_lab(load_topology_text(text), "x")


@pytest.mark.parametrize(
    ("lab", "message"),
    [
        ("lab: {subnet: 8.8.8.0/24}\n", "private"),
        ("lab: {subnet: 10.0.0.1/16}\n", "IPv4 network"),
        ("lab: {links: {zone: {latency_ms: 5}, region: {latency_ms: 2}}}\n", "at least"),
        ("lab: {links: {zone: {loss_pct: 100}}}\n", "less than 100"),
        ("lab: {links: {backend: tc}}\n", "auto"),
        ("lab: {subnet: 10.0.0.0/16, vlan: 3}\n", "unknown field 'vlan'"),
    ],
)
def test_bad_lab_sections_are_reported_with_their_place(lab: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message) as err:
        topo(lab)
    assert "lab" in str(err.value)


def test_hosts_plug_into_their_zone_and_zoneless_ones_into_the_core() -> None:
    plan = plan_lab(topo(), "x")
    assert plan.hosts["h1"].bridge == plan.hosts["h2"].bridge != plan.hosts["h3"].bridge
    assert plan.hosts["loose"].bridge == "core"
    assert plan.hosts[DEFAULT_HOST].bridge == "core"
    zone_links = {lk.element: lk for lk in plan.links if lk.element.startswith("zone:")}
    assert set(zone_links) == {"zone:eu/a", "zone:eu/b", "zone:us/a"}
    assert zone_links["zone:eu/a"].upper_bridge == zone_links["zone:eu/b"].upper_bridge
    assert zone_links["zone:us/a"].upper_bridge != zone_links["zone:eu/a"].upper_bridge
    assert {lk.upper_bridge for lk in plan.links if lk.element.startswith("region:")} == {"core"}


def test_link_figures_are_end_to_end_one_way() -> None:
    plan = plan_lab(
        topo(
            "lab: {links: {zone: {latency_ms: 2, jitter_ms: 1, loss_pct: 1}, "
            "region: {latency_ms: 30, jitter_ms: 3, loss_pct: 2}}}\n"
        ),
        "x",
    )
    zone, region = plan.link("zone:eu/a").impairment, plan.link("region:eu").impairment
    # Between zones: two zone crossings; between regions: two of each.
    assert 2 * zone.delay_ms == pytest.approx(2)
    assert 2 * zone.delay_ms + 2 * region.delay_ms == pytest.approx(30)
    assert 2 * zone.jitter_ms + 2 * region.jitter_ms == pytest.approx(3)
    kept_zone = (1 - zone.loss_pct / 100) ** 2
    assert 1 - kept_zone == pytest.approx(0.01)
    assert 1 - kept_zone * (1 - region.loss_pct / 100) ** 2 == pytest.approx(0.02)


def test_default_links_and_impairments_add_up() -> None:
    plan = plan_lab(topo(), "x")
    assert plan.link("zone:eu/a").impairment == Impairment(0.5, 0, 0)
    assert plan.link("region:us").impairment == Impairment(14.5, 0, 0)
    both = Impairment(1, 2, 50).plus(Impairment(3, 0, 50))
    assert (both.delay_ms, both.jitter_ms, both.loss_pct) == (4, 2, 75)
    assert Impairment().none and not both.none


def test_lab_topology_puts_every_instance_at_its_lab_address() -> None:
    t = topo()
    plan = plan_lab(t, "x")
    lt = lab_topology(t, plan)
    web = lt.instances["web"]
    assert [lt.address_of(i) for i in web] == [
        "10.77.0.10:8000",
        "10.77.0.12:8001",
        "10.77.0.13:8002",
    ]
    cache = lt.instances["cache"]
    assert [i.host for i in cache] == [DEFAULT_HOST, DEFAULT_HOST]
    assert lt.address_of(cache[1]) == "10.77.0.15:9001"
    assert lt.hosts["h1"].zone == "eu/a"  # placement kept
    assert t.hosts["h1"].address == "127.0.0.1"  # the original is not changed


def test_no_default_host_without_hostless_instances() -> None:
    text = BASE.replace("  cache: {kind: service, instances: 2, port: 9000}\n", "")
    plan = plan_lab(load_topology_text(text), "x")
    assert plan.default_host is None and DEFAULT_HOST not in plan.hosts
    clash = text.replace("  loose: {}", f"  {DEFAULT_HOST}: {{}}") + ""
    clash = clash.replace("instances: [h1, h3, h4]", "instances: 2")
    with pytest.raises(LabError, match="rename that host"):
        plan_lab(load_topology_text(clash), "x")


def test_plan_and_state_survive_the_state_file() -> None:
    plan = plan_lab(topo(), "x")
    assert LabPlan.from_json(plan.to_json()) == plan
    state = LabState(plan=plan, source="/srv/t.yaml", status="up", relay_pid=7)
    state.cut.append("host:h1")
    state.extra["zone:eu/a"] = Impairment(10, 0, 5)
    again = LabState.from_json(state.to_json())
    assert again == state
    assert again.effective(plan.link("zone:eu/a")).delay_ms == 10.5


def test_elements_are_parsed_like_the_analysis_names_them() -> None:
    plan = plan_lab(topo(), "x")
    assert parse_element(plan, "h1") == "host:h1"
    assert parse_element(plan, "host:h1") == "host:h1"
    assert parse_element(plan, "eu/b") == "zone:eu/b"
    assert parse_element(plan, "us") == "region:us"
    with pytest.raises(LabError, match="no host"):
        parse_element(plan, "mars")
    with pytest.raises(LabError, match="unknown host"):
        parse_element(plan, "host:mars")
    with pytest.raises(LabError, match="no link"):
        parse_element(plan, "zone:eu/z")
    with pytest.raises(LabError, match="an element is"):
        parse_element(plan, "rack:1")
