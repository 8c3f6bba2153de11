"""Building a DNS instance's settings from the topology, and the errors it reports."""

from __future__ import annotations

import ipaddress

import pytest

from spofless.dns import DnsSettings, dns_settings
from spofless.topology import TopologyError, load_topology_text

BASE = """\
name: shop
regions:
  eu: {zones: [a]}
hosts:
  h1: {zone: eu/a, address: 10.0.0.1}
  h2: {zone: eu/a, address: 10.0.0.2}
components:
  dns: {kind: dns, instances: [h1, h2], port: 5300, zone: shop.example, records: {www: lb}%s}
  lb: {kind: load_balancer, instances: [h1, h2], port: 8000%s}
  app: {kind: service, instances: 2}
entry: [dns]
"""


def settings_of(dns_extra: str = "", lb_extra: str = "", index: int = 1) -> DnsSettings:
    return dns_settings(load_topology_text(BASE % (dns_extra, lb_extra), "shop.yaml"), "dns", index)


def test_settings_from_the_topology() -> None:
    s = settings_of(lb_extra=", health: {type: http, interval: 0.5}")
    assert s.instance == "dns/1"
    assert (s.listen_host, s.port) == ("10.0.0.2", 5301)
    assert s.zone == "shop.example." and s.ttl == 5 and s.records == {"www": "lb"}
    pool = s.pools["lb"]
    assert pool.health.type == "http" and pool.health.interval == 0.5
    got = [(m.name, str(m.address), m.region, m.check_host, m.check_port) for m in pool.members]
    assert got == [
        ("lb/0", "10.0.0.1", "eu", "10.0.0.1", 8000),
        ("lb/1", "10.0.0.2", "eu", "10.0.0.2", 8001),
    ]
    assert [(ns.name, ns.addresses) for ns in s.nameservers] == [
        ("ns1.shop.example.", (ipaddress.ip_address("10.0.0.1"),)),
        ("ns2.shop.example.", (ipaddress.ip_address("10.0.0.2"),)),
    ]
    assert s.rate_limit.responses_per_second == 100 and s.rate_limit.slip == 2


def test_explicit_nameservers_outside_the_zone_have_no_glue() -> None:
    s = settings_of(", nameservers: [a.dns.example., b]")
    assert [(ns.name, len(ns.addresses)) for ns in s.nameservers] == [
        ("a.dns.example.", 0),
        ("b.shop.example.", 1),
    ]


def test_the_port_can_be_overridden() -> None:
    topo = load_topology_text(BASE % ("", ""))
    assert dns_settings(topo, "dns", 0, port=0).port == 0


@pytest.mark.parametrize(
    ("dns_extra", "lb_extra", "expected"),
    [
        (", regions: {us: [10.0.0.0/8]}", "", "shop.yaml:8:"),
        (", regions: {us: [10.0.0.0/8]}", "", "components.dns.regions.us: unknown region 'us'"),
        (", nameservers: [ns1, ns2, ns3]", "", "no DNS instance 2"),
        (", nameservers: [www]", "", "'www' is also a record's name"),
    ],
)
def test_cross_reference_errors_name_file_line_and_field(
    dns_extra: str, lb_extra: str, expected: str
) -> None:
    with pytest.raises(TopologyError) as err:
        settings_of(dns_extra, lb_extra)
    assert expected in str(err.value)


def _error(text: str, component: str = "dns", index: int = 0) -> str:
    with pytest.raises(TopologyError) as err:
        dns_settings(load_topology_text(text, "f.yaml"), component, index)
    return str(err.value)


def test_records_must_point_at_a_component_with_a_port_and_matching_addresses() -> None:
    text = BASE.replace("records: {www: lb}", "records: {www: app}") % ("", "")
    assert "component 'app' has no port to health-check" in _error(text)
    text = BASE.replace("records: {www: lb}", "records: {www: nope}") % ("", "")
    assert "components.dns.records.www: unknown component 'nope'" in _error(text)
    text = BASE.replace("{www: lb}", "{www: {component: lb, addresses: [1.2.3.4]}}") % ("", "")
    assert "1 addresses for the 2 instances of 'lb'" in _error(text)


def test_running_needs_zone_records_port_and_a_dns_component() -> None:
    text = BASE.replace(" zone: shop.example,", "") % ("", "")
    assert "missing required field 'zone'" in _error(text)
    text = BASE.replace(", records: {www: lb}", "") % ("", "")
    assert "give at least one name to answer" in _error(text)
    text = BASE.replace(" port: 5300,", "") % ("", "")
    assert "missing required field 'port'" in _error(text)
    assert "no dns component 'lb'; lb is kind load_balancer (dns components: dns)" in _error(
        BASE % ("", ""), "lb"
    )
    assert "no dns component 'nope' (dns components: dns)" in _error(BASE % ("", ""), "nope")
    assert "has instances 0..1, not 5" in _error(BASE % ("", ""), index=5)


def test_schema_rejects_bad_dns_fields_with_their_place() -> None:
    text = BASE.replace("zone: shop.example", "zone: 'shop example'") % ("", "")
    with pytest.raises(TopologyError) as err:
        load_topology_text(text, "f.yaml")
    assert "f.yaml:8:" in str(err.value) and "is not a DNS name" in str(err.value)
    with pytest.raises(TopologyError) as err:
        load_topology_text(BASE % (", ttl: -1", ""), "f.yaml")
    assert "components.dns.ttl" in str(err.value)
    with pytest.raises(TopologyError) as err:
        load_topology_text(BASE % (", rate_limit: {slip: 11}", ""), "f.yaml")
    assert "components.dns.rate_limit.slip" in str(err.value)
    with pytest.raises(TopologyError) as err:
        load_topology_text(BASE % (", regions: {eu: [10.0.0.1/8]}", ""), "f.yaml")
    assert "components.dns.regions.eu[0]" in str(err.value)


def test_a_dns_component_without_run_fields_still_loads_for_the_analysis() -> None:
    topo = load_topology_text("name: x\ncomponents:\n  d: {kind: dns, instances: 2}\nentry: [d]\n")
    assert topo.components["d"].kind == "dns"
