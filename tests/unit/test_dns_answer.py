"""The pure answer logic: (query, client, health view, zone) -> response, no sockets."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from spofless.dns import Zone, answer_wire, dns_settings, select_members
from spofless.health import Status
from spofless.topology import load_topology_text

TOPOLOGY = """\
name: shop
regions:
  eu: {zones: [a, b]}
  us: {zones: [a]}
hosts:
  eu1: {zone: eu/a, address: 10.1.0.1}
  eu2: {zone: eu/b, address: 10.1.0.2}
  us1: {zone: us/a, address: 10.2.0.1}
  us6: {zone: us/a, address: "2001:db8::1"}
components:
  dns:
    kind: dns
    instances: [eu1, us1]
    port: 5300
    zone: Shop.Example
    ttl: 7
    records:
      www: lb
      "@": lb
      api.v1: {component: app, addresses: [203.0.113.1, 203.0.113.2]}
    regions:
      eu: [192.0.2.0/24]
      us: [198.51.100.0/24, "2001:db8:1::/48"]
  lb: {kind: load_balancer, instances: [eu1, eu2, us1, us6], port: 8000}
  app: {kind: service, instances: [eu1, us1], port: 9000}
entry: [dns]
"""

EU_CLIENT = ipaddress.ip_address("192.0.2.10")
US_CLIENT = ipaddress.ip_address("198.51.100.7")
OTHER_CLIENT = ipaddress.ip_address("127.0.0.1")
ALL_UP = {f"lb/{i}": Status.UP for i in range(4)} | {"app/0": Status.UP, "app/1": Status.UP}


@pytest.fixture(scope="module")
def zone() -> Zone:
    return Zone(dns_settings(load_topology_text(TOPOLOGY), "dns", 0))


def ask(
    zone: Zone,
    name: str,
    rdtype: str = "A",
    view: dict[str, Status] | None = None,
    source: ipaddress.IPv4Address | ipaddress.IPv6Address | None = OTHER_CLIENT,
    **make: object,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make)  # type: ignore[arg-type]
    wire = answer_wire(query.to_wire(), source, ALL_UP if view is None else view, zone)
    assert wire is not None
    return dns.message.from_wire(wire)


def addresses(response: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in response.answer for rd in rrset}


def test_healthy_instances_answer_with_the_ttl_authoritatively(zone: Zone) -> None:
    r = ask(zone, "www.shop.example.")
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == {"10.1.0.1", "10.1.0.2", "10.2.0.1"}
    assert r.answer[0].ttl == 7
    assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA
    assert r.flags & dns.flags.RD  # copied from the query, recursion still not offered
    r6 = ask(zone, "WWW.shop.example.", "AAAA")
    assert addresses(r6) == {"2001:db8::1"}


def test_a_failed_instance_is_left_out_and_all_come_back_when_none_passes(zone: Zone) -> None:
    view = ALL_UP | {"lb/1": Status.DOWN}
    assert addresses(ask(zone, "www.shop.example.", view=view)) == {"10.1.0.1", "10.2.0.1"}
    down = {f"lb/{i}": Status.DOWN for i in range(4)}
    assert addresses(ask(zone, "www.shop.example.", view=down)) == {
        "10.1.0.1",
        "10.1.0.2",
        "10.2.0.1",
    }
    # Not yet checked is not healthy: with nothing known, fail open too.
    assert len(addresses(ask(zone, "www.shop.example.", view={}))) == 3
    only_unknown_up = {"lb/0": Status.UP}
    assert addresses(ask(zone, "www.shop.example.", view=only_unknown_up)) == {"10.1.0.1"}


def test_fail_open_is_per_address_family(zone: Zone) -> None:
    view = ALL_UP | {"lb/3": Status.DOWN}
    assert addresses(ask(zone, "www.shop.example.", "AAAA", view=view)) == {"2001:db8::1"}
    assert len(addresses(ask(zone, "www.shop.example.", view=view))) == 3


def test_clients_in_a_region_get_that_regions_healthy_instances(zone: Zone) -> None:
    eu = ask(zone, "www.shop.example.", source=EU_CLIENT)
    assert addresses(eu) == {"10.1.0.1", "10.1.0.2"}
    us = ask(zone, "www.shop.example.", source=US_CLIENT)
    assert addresses(us) == {"10.2.0.1"}
    # A client outside every region's networks gets every healthy instance.
    assert len(addresses(ask(zone, "www.shop.example.", source=OTHER_CLIENT))) == 3


def test_a_region_with_none_healthy_falls_back_to_the_others(zone: Zone) -> None:
    view = ALL_UP | {"lb/0": Status.DOWN, "lb/1": Status.DOWN}
    assert addresses(ask(zone, "www.shop.example.", view=view, source=EU_CLIENT)) == {"10.2.0.1"}
    none = {f"lb/{i}": Status.DOWN for i in range(4)}
    assert len(addresses(ask(zone, "www.shop.example.", view=none, source=EU_CLIENT))) == 3


def test_edns_client_subnet_decides_the_region_and_is_echoed_with_its_scope(zone: Zone) -> None:
    ecs = dns.edns.ECSOption("198.51.100.0", 24)
    r = ask(zone, "www.shop.example.", source=EU_CLIENT, use_edns=0, options=[ecs])
    assert addresses(r) == {"10.2.0.1"}
    echoed = [o for o in r.options if isinstance(o, dns.edns.ECSOption)]
    assert len(echoed) == 1 and echoed[0].srclen == 24 and echoed[0].scopelen == 24
    v6 = dns.edns.ECSOption("2001:db8:1:2::", 56)
    r = ask(zone, "www.shop.example.", source=EU_CLIENT, use_edns=0, options=[v6])
    assert addresses(r) == {"10.2.0.1"}
    # A zero source prefix says nothing about the client: the source address decides.
    anon = dns.edns.ECSOption("0.0.0.0", 0)
    r = ask(zone, "www.shop.example.", source=EU_CLIENT, use_edns=0, options=[anon])
    assert addresses(r) == {"10.1.0.1", "10.1.0.2"}


def test_select_members_says_why() -> None:
    settings = dns_settings(load_topology_text(TOPOLOGY), "dns", 0)
    members = settings.pools["lb"].members
    chosen, why = select_members(members, {}, 4, "eu")
    assert len(chosen) == 3 and why.startswith("fail open")
    chosen, why = select_members(members, ALL_UP, 4, "eu")
    assert [m.name for m in chosen] == ["lb/0", "lb/1"] and why == "healthy in eu"


def test_per_instance_addresses_and_relative_multi_label_names(zone: Zone) -> None:
    r = ask(zone, "api.v1.shop.example.")
    assert addresses(r) == {"203.0.113.1", "203.0.113.2"}


def test_every_address_comes_first_in_some_answers(zone: Zone) -> None:
    firsts = set()
    query = dns.message.make_query("www.shop.example.", "A").to_wire()
    for _ in range(100):  # shuffled: each of 3 is never first with probability (2/3)^100
        wire = answer_wire(query, OTHER_CLIENT, ALL_UP, zone)
        assert wire is not None
        firsts.add(next(iter(dns.message.from_wire(wire).answer[0])).to_text())
    assert firsts == {"10.1.0.1", "10.1.0.2", "10.2.0.1"}


def test_unknown_name_in_the_zone_is_nxdomain_with_the_soa(zone: Zone) -> None:
    r = ask(zone, "nope.shop.example.")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    soa = next(iter(r.authority[0]))
    assert soa.minimum == 7  # negative answers are cached as briefly as positive ones
    assert r.flags & dns.flags.AA


def test_known_name_without_the_type_and_empty_non_terminal_are_nodata(zone: Zone) -> None:
    for name, rdtype in [("www.shop.example.", "MX"), ("v1.shop.example.", "A")]:
        r = ask(zone, name, rdtype)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        assert r.authority[0].rdtype == dns.rdatatype.SOA


def test_names_outside_the_zone_other_classes_and_transfers_are_refused(zone: Zone) -> None:
    for name, rdtype, rdclass in [
        ("example.com.", "A", "IN"),
        ("shop.example.com.", "A", "IN"),
        ("example.", "SOA", "IN"),
        ("version.bind.", "TXT", "CH"),
        ("www.shop.example.", "A", "CH"),
        ("shop.example.", "AXFR", "IN"),
        ("shop.example.", "IXFR", "IN"),
    ]:
        r = ask(zone, name, rdtype, rdclass=dns.rdataclass.from_text(rdclass))
        assert r.rcode() == dns.rcode.REFUSED, (name, rdtype, rdclass)
        assert not r.answer and not r.flags & dns.flags.AA and not r.flags & dns.flags.RA


def test_apex_has_soa_ns_with_glue_and_the_apex_record(zone: Zone) -> None:
    soa = ask(zone, "shop.example.", "SOA")
    assert soa.answer[0].rdtype == dns.rdatatype.SOA
    assert next(iter(soa.answer[0])).mname.to_text() == "ns1.shop.example."
    ns = ask(zone, "shop.example.", "NS")
    assert {rd.to_text() for rd in ns.answer[0]} == {"ns1.shop.example.", "ns2.shop.example."}
    glue = {(rrset.name.to_text(), rd.to_text()) for rrset in ns.additional for rd in rrset}
    assert glue == {("ns1.shop.example.", "10.1.0.1"), ("ns2.shop.example.", "10.2.0.1")}
    assert addresses(ask(zone, "ns2.shop.example.")) == {"10.2.0.1"}
    assert len(addresses(ask(zone, "shop.example."))) == 3


def test_any_gets_the_rfc8482_answer(zone: Zone) -> None:
    r = ask(zone, "www.shop.example.", "ANY")
    assert len(r.answer) == 1 and r.answer[0].rdtype == dns.rdatatype.HINFO


def test_other_opcodes_and_edns_versions() -> None:
    zone = Zone(dns_settings(load_topology_text(TOPOLOGY), "dns", 0))
    query = dns.message.make_query("www.shop.example.", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    wire = answer_wire(query.to_wire(), OTHER_CLIENT, ALL_UP, zone)
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.NOTIMP
    query = dns.message.make_query("www.shop.example.", "A", use_edns=1)
    wire = answer_wire(query.to_wire(), OTHER_CLIENT, ALL_UP, zone)
    assert wire is not None
    r = dns.message.from_wire(wire)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and not r.answer


def test_malformed_queries_get_formerr_or_nothing(zone: Zone) -> None:
    good = dns.message.make_query("www.shop.example.", "A").to_wire()
    assert answer_wire(good[:11], OTHER_CLIENT, ALL_UP, zone) is None  # no header to answer
    response = answer_wire(good, OTHER_CLIENT, ALL_UP, zone)
    assert response is not None
    assert answer_wire(response, OTHER_CLIENT, ALL_UP, zone) is None  # never answer a response
    for bad in [good[:-3], good + b"junk", good[:12] + b"\xff" * 40]:
        wire = answer_wire(bad, OTHER_CLIENT, ALL_UP, zone)
        assert wire is not None and len(wire) == 12
        assert wire[:2] == good[:2] and wire[2] & 0x80 and wire[3] & 0x0F == dns.rcode.FORMERR
    two = dns.message.make_query("www.shop.example.", "A")
    two.question.append(two.question[0])
    wire = answer_wire(two.to_wire(), OTHER_CLIENT, ALL_UP, zone)
    assert wire is not None and wire[3] & 0x0F == dns.rcode.FORMERR
    empty = dns.message.Message(id=5)
    wire = answer_wire(empty.to_wire(), OTHER_CLIENT, ALL_UP, zone)
    assert wire is not None and wire[3] & 0x0F == dns.rcode.FORMERR


_MANY = ", ".join(f'"2001:db8::{i:x}"' for i in range(1, 61))
BIG = f"""\
name: big
components:
  dns: {{kind: dns, instances: 1, port: 5300, zone: big.example.,
         records: {{many: {{component: lb, addresses: [{_MANY}]}}}}}}
  lb: {{kind: load_balancer, instances: 60, port: 8000}}
entry: [dns]
"""


def test_oversized_udp_answers_are_truncated_to_what_the_query_allows() -> None:
    zone = Zone(dns_settings(load_topology_text(BIG), "dns", 0))
    plain = dns.message.make_query("many.big.example.", "AAAA").to_wire()
    wire = answer_wire(plain, OTHER_CLIENT, {}, zone)
    assert wire is not None and len(wire) <= 512
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC and not r.answer
    for advertised, limit in [(4096, 1232), (1000, 1000), (100, 512)]:
        q = dns.message.make_query("many.big.example.", "AAAA", use_edns=0, payload=advertised)
        wire = answer_wire(q.to_wire(), OTHER_CLIENT, {}, zone)
        assert wire is not None and len(wire) <= limit
        r = dns.message.from_wire(wire)
        assert r.flags & dns.flags.TC and r.edns == 0
    tcp = answer_wire(plain, OTHER_CLIENT, {}, zone, tcp=True)
    assert tcp is not None and len(tcp) > 1232
    r = dns.message.from_wire(tcp)
    assert not r.flags & dns.flags.TC and len(addresses(r)) == 60


def test_an_answer_that_fits_what_the_query_allows_is_whole() -> None:
    # 60 AAAA records take about 1.7 kB: whole when both sides allow 4096 bytes.
    zone = Zone(dns_settings(load_topology_text(BIG), "dns", 0))
    roomy = Zone(zone.settings.model_copy(update={"max_udp_payload": 4096}))
    q = dns.message.make_query("many.big.example.", "AAAA", use_edns=0, payload=4096)
    wire = answer_wire(q.to_wire(), OTHER_CLIENT, {}, roomy)
    assert wire is not None and 1232 < len(wire) <= 4096
    r = dns.message.from_wire(wire)
    assert not r.flags & dns.flags.TC and len(addresses(r)) == 60


def test_slip_answers_header_and_question_with_tc(zone: Zone) -> None:
    query = dns.message.make_query("www.shop.example.", "A")
    wire = answer_wire(query.to_wire(), OTHER_CLIENT, ALL_UP, zone, slip=True)
    assert wire is not None
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC and not r.answer and r.question == query.question
    assert len(wire) <= len(query.to_wire())  # never more bytes than the query
