"""The answer cache returns what the pure answer function returns, with the query's id."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.message
import pytest

from spofless.dns import AnswerCache, Zone, answer_wire, dns_settings
from spofless.health import Status
from spofless.topology import load_topology_text
from tests.unit.test_dns_answer import ALL_UP, EU_CLIENT, TOPOLOGY, US_CLIENT


@pytest.fixture
def zone() -> Zone:
    return Zone(dns_settings(load_topology_text(TOPOLOGY), "dns", 0))


def _same(a: bytes | None, b: bytes | None) -> None:
    """Equal answers; records may come in another order (they are shuffled)."""
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert dns.message.from_wire(a) == dns.message.from_wire(b)
        assert a[:2] == b[:2]


QUERIES = [
    dns.message.make_query("www.shop.example.", "A"),
    dns.message.make_query("www.shop.example.", "AAAA", use_edns=0),
    dns.message.make_query(
        "www.shop.example.", "A", use_edns=0, options=[dns.edns.ECSOption("198.51.100.0", 24)]
    ),
    dns.message.make_query("nope.shop.example.", "A"),
    dns.message.make_query("example.com.", "A"),
    dns.message.make_query("shop.example.", "NS"),
]


@pytest.mark.parametrize("tcp", [False, True])
def test_cached_answers_equal_fresh_ones_for_any_id(zone: Zone, tcp: bool) -> None:
    cache = AnswerCache(zone)
    for source in (EU_CLIENT, US_CLIENT, ipaddress.ip_address("127.0.0.1")):
        for query in QUERIES:
            for qid in (1, 2, 65535):
                query.id = qid
                wire = query.to_wire()
                fresh = answer_wire(wire, source, ALL_UP, zone, tcp=tcp)
                _same(cache.answer(wire, source, ALL_UP, tcp=tcp), fresh)
    assert cache.hits > cache.misses


def test_malformed_and_responses_are_not_cached(zone: Zone) -> None:
    cache = AnswerCache(zone)
    wire = QUERIES[0].to_wire()
    assert cache.answer(wire[:5], None, ALL_UP) is None
    bad = cache.answer(wire[:-2], None, ALL_UP)
    assert bad is not None and len(bad) == 12
    response = answer_wire(wire, None, ALL_UP, zone)
    assert response is not None and cache.answer(response, None, ALL_UP) is None
    assert len(cache) == 0


def test_clear_makes_a_new_health_view_visible(zone: Zone) -> None:
    cache = AnswerCache(zone)
    wire = QUERIES[0].to_wire()
    before = dns.message.from_wire(cache.answer(wire, None, ALL_UP) or b"")
    down = ALL_UP | {"lb/0": Status.DOWN}
    stale = dns.message.from_wire(cache.answer(wire, None, down) or b"")
    assert stale == before  # the owner must clear on every change; it does (see DnsServer)
    cache.clear()
    fresh = dns.message.from_wire(cache.answer(wire, None, down) or b"")
    assert {rd.to_text() for rd in fresh.answer[0]} == {"10.1.0.2", "10.2.0.1"}


def test_renderings_spread_the_first_address(zone: Zone) -> None:
    cache = AnswerCache(zone, variants=3)
    query = dns.message.make_query("www.shop.example.", "A")
    firsts = set()
    for _ in range(20):  # each round renders 3 shuffled answers afresh
        cache.clear()
        for qid in range(3):
            query.id = qid
            wire = cache.answer(query.to_wire(), None, ALL_UP)
            assert wire is not None
            firsts.add(next(iter(dns.message.from_wire(wire).answer[0])).to_text())
    assert firsts == {"10.1.0.1", "10.1.0.2", "10.2.0.1"}  # odds of failing: about 1e-10


def test_the_cache_is_bounded(zone: Zone) -> None:
    cache = AnswerCache(zone, max_entries=50)
    for i in range(500):
        cache.answer(dns.message.make_query(f"n{i}.shop.example.", "A").to_wire(), None, ALL_UP)
    assert len(cache) <= 50
