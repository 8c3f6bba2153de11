"""Per-region VIPs (`vip: {addresses: {region: address}}`): the schema and its checks, each
agent's address and claim, `status` roles from several claims, DNS answers (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.dns import dns_settings
from spofless.dns._answer import select_members
from spofless.health import Status
from spofless.stack._vip import ClaimView, vip_agents, vip_roles
from spofless.topology import Topology, TopologyError, load_topology_text, vip_claim_key
from spofless.vip import vip_settings

TOPOLOGY = """\
name: geo
security: {tls: false}
regions:
  eu: {zones: [a]}
  us: {zones: [a]}
  ap: {zones: [a]}
hosts:
  e1: {zone: eu/a, address: 10.0.0.1}
  e2: {zone: eu/a, address: 10.0.0.2}
  u1: {zone: us/a, address: 10.0.1.1}
  u2: {zone: us/a, address: 10.0.1.2}
  a1: {zone: ap/a, address: 10.0.2.1}
components:
  etcd: {kind: etcd, instances: [e1, u1, a1], port: 2379, peer_port: 2479, min_up: majority}
  dns:
    kind: dns
    instances: [e1, u1]
    port: 5300
    zone: geo.example
    records: {www: lb}
    regions: {eu: [192.0.2.0/24], us: [198.51.100.0/24]}
  lb:
    kind: load_balancer
    instances: [%s]
    port: 8080
    routes: [{to: etcd}]
    vip: {%s}
entry: [dns, lb]
"""
LBS = "e1, e2, u1, u2"
ADDRESSES = "addresses: {eu: 10.0.255.1/16, us: 10.0.255.2/16}"


def topology(lbs: str = LBS, vip: str = ADDRESSES) -> Topology:
    return load_topology_text(TOPOLOGY % (lbs, vip), "geo.yaml")


def errors(lbs: str = LBS, vip: str = ADDRESSES) -> str:
    with pytest.raises(TopologyError) as info:
        topology(lbs, vip)
    return str(info.value)


def test_each_region_floats_its_own_address_between_its_own_instances() -> None:
    t = topology()
    settings = [vip_settings(t, "lb", i) for i in range(4)]
    got = [(s.instance, str(s.address), s.key) for s in settings]
    assert got == [
        ("lb/0", "10.0.255.1/16", "/spofless/geo/vip/lb/eu"),
        ("lb/1", "10.0.255.1/16", "/spofless/geo/vip/lb/eu"),
        ("lb/2", "10.0.255.2/16", "/spofless/geo/vip/lb/us"),
        ("lb/3", "10.0.255.2/16", "/spofless/geo/vip/lb/us"),
    ]
    assert vip_claim_key(t, "lb") == "/spofless/geo/vip/lb"
    agents = vip_agents(t, "lb", t.instances["lb"])
    assert [(a.address, a.key.rsplit("/", 1)[1]) for a in agents] == [
        ("10.0.255.1:8080", "eu"),
        ("10.0.255.1:8080", "eu"),
        ("10.0.255.2:8080", "us"),
        ("10.0.255.2:8080", "us"),
    ]


def test_the_single_address_form_is_unchanged() -> None:
    t = topology(vip="address: 10.0.255.9/16")
    s = vip_settings(t, "lb", 3)
    assert (str(s.address), s.key) == ("10.0.255.9/16", "/spofless/geo/vip/lb")


def test_one_instance_in_a_region_is_allowed_with_a_warning() -> None:
    t = topology("e1, e2, u1")
    assert str(vip_settings(t, "lb", 2).address) == "10.0.255.2/16"
    (w,) = [w for w in t.warnings if "vip" in w.field]
    assert w.field == "components.lb.vip.addresses.us" and w.line > 0
    assert "lb/2 is the only instance in region us" in w.message
    assert not [w for w in topology().warnings if "vip" in w.field]


@pytest.mark.parametrize(
    ("lbs", "vip", "expected"),
    [
        (LBS, "address: 10.0.255.9/16, " + ADDRESSES, "either `address`"),
        (LBS, "hold_time: 0.5", "not both nor neither"),
        (LBS, "addresses: {eu: 10.0.255.1/16, us: 10.0.255.1/16}", "the same address"),
        (LBS, "addresses: {eu: 127.0.0.1/8, us: 10.0.255.2/16}", "eu: address 127.0.0.1"),
        (LBS, "addresses: {eu: 10.0.255.1/16, mars: 10.0.255.2/16}", "unknown region 'mars'"),
        (LBS, "addresses: {eu: 10.0.255.1/16, ap: 10.0.255.2/16}", "nobody would hold"),
        (LBS, "addresses: {eu: 10.0.255.1/16}", "lb/2, lb/3 in region us would hold no"),
        (LBS, "addresses: {}", "at least one region"),
    ],
)
def test_mistakes_are_named_where_they_are(lbs: str, vip: str, expected: str) -> None:
    message = errors(lbs, vip)
    assert expected in message and "geo.yaml:" in message


def test_status_roles_come_from_every_region_claim() -> None:
    claims = (ClaimView("lb/1", "holding"), ClaimView("lb/2", "pending"))
    assert vip_roles(claims, "lb", [0, 1, 2, 3]) == {
        "lb-vip/0": "standby",
        "lb-vip/1": "holder",
        "lb/1": "vip-holder",
        "lb-vip/2": "pending",
        "lb-vip/3": "standby",
    }
    assert vip_roles((), "lb", [0]) == {"lb-vip/0": "standby"}


def test_dns_answers_each_region_with_its_vip_and_falls_back_to_another() -> None:
    s = dns_settings(topology(), "dns", 0)
    members = s.pools["lb"].members
    got = [(m.name, str(m.address), m.region, m.check_host, m.check_port) for m in members]
    assert got == [
        ("lb-vip/eu", "10.0.255.1", "eu", "10.0.255.1", 8080),
        ("lb-vip/us", "10.0.255.2", "us", "10.0.255.2", 8080),
    ]
    both = {"lb-vip/eu": Status.UP, "lb-vip/us": Status.UP}
    chosen, _ = select_members(members, both, 4, "eu")
    assert [m.name for m in chosen] == ["lb-vip/eu"]
    # Every load balancer of eu down: nobody holds eu's VIP, its check fails.
    eu_gone = {"lb-vip/eu": Status.DOWN, "lb-vip/us": Status.UP}
    chosen, _ = select_members(members, eu_gone, 4, "eu")
    assert [m.name for m in chosen] == ["lb-vip/us"]


def test_a_record_with_addresses_for_per_region_vips_is_refused(tmp_path: Path) -> None:
    from spofless.topology import CannotRunError

    text = (TOPOLOGY % (LBS, ADDRESSES)).replace(
        "records: {www: lb}", "records: {www: {component: lb, addresses: [10.9.9.9]}}"
    )
    with pytest.raises(CannotRunError, match="drop `addresses`"):
        dns_settings(load_topology_text(text, "geo.yaml"), "dns", 0)


def test_drill_traffic_via_vip_tries_every_region_address_in_order() -> None:
    from spofless.drill.traffic import http_addresses
    from spofless.topology._drills import HttpTarget

    got = http_addresses(topology(), HttpTarget(via="vip", to="lb"))()
    assert list(got) == ["10.0.255.1:8080", "10.0.255.2:8080"]
