"""The DNS server on real sockets, dnspython as the client, real backend processes as the
load balancers (killed with kill -9)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest
from dns_fixtures import (
    DnsProcess,
    Spawn,
    backend_spawner,
    dns_process_starter,
    free_port,
    lb_topology,
)

from spofless.dns import DnsServer, dns_settings
from spofless.health import Status
from spofless.topology import load_topology_text

pytestmark = pytest.mark.integration


@pytest.fixture
def backends() -> Iterator[Spawn]:
    yield from backend_spawner()


@pytest.fixture
def dns_process(tmp_path: Path) -> Iterator[Callable[[str], DnsProcess]]:
    yield from dns_process_starter(tmp_path)


LB_HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
WWW = "www.shop.example."


def _resolver(port: int, cache: bool = False) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.timeout = resolver.lifetime = 2.0
    if cache:
        resolver.cache = dns.resolver.Cache()
    return resolver


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str = WWW) -> set[str]:
    answer = await resolver.resolve(name, "A")
    return {rd.to_text() for rd in answer}


async def _wait_for(
    resolver: dns.asyncresolver.Resolver, expected: set[str], bound: float
) -> float:
    """Seconds until the resolver's answer is `expected`; fails after `bound` seconds."""
    start = time.monotonic()
    got: set[str] = set()
    while time.monotonic() - start < bound:
        got = await _addresses(resolver)
        if got == expected:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"answer still {sorted(got)} after {bound}s, wanted {sorted(expected)}")


async def test_answers_follow_health_within_a_check_interval_plus_ttl(backends: Spawn) -> None:
    lb_port, group = backends(LB_HOSTS)
    text = lb_topology(LB_HOSTS, lb_port, dns_extra="    ttl: 1")
    settings = dns_settings(load_topology_text(text), "dns", 0, port=0)
    async with DnsServer(settings) as server:
        resolver = _resolver(server.port, cache=True)  # honours the TTL like a real resolver
        await _wait_for(resolver, set(LB_HOSTS), 10.0)
        group[1].kill()
        spec = settings.pools["lb"].health
        elapsed = await _wait_for(resolver, {LB_HOSTS[0], LB_HOSTS[2]}, 15.0)
        # A refused connection marks it down at the next check; a cached answer lives 1 s.
        # The bound is generous (shared machine); benchmarks measure, tests catch hangs.
        assert elapsed < spec.interval + spec.timeout + settings.ttl + 3.0
        assert server.view["lb/1"] is Status.DOWN
        assert group[1].start()
        await _wait_for(resolver, set(LB_HOSTS), 15.0)


async def test_fail_open_when_every_load_balancer_is_down(backends: Spawn) -> None:
    lb_port, group = backends(LB_HOSTS)
    settings = dns_settings(load_topology_text(lb_topology(LB_HOSTS, lb_port)), "dns", 0, port=0)
    async with DnsServer(settings) as server:
        resolver = _resolver(server.port)
        await _wait_for(resolver, set(LB_HOSTS), 10.0)
        group[0].kill()
        group[2].kill()
        await _wait_for(resolver, {LB_HOSTS[1]}, 10.0)
        group[1].kill()
        deadline = time.monotonic() + 10.0
        while any(s is not Status.DOWN for s in server.view.values()):
            assert time.monotonic() < deadline, server.view
            await asyncio.sleep(0.05)
        assert await _addresses(resolver) == set(LB_HOSTS)  # fail open: all of them


def _many_topology(count: int, dns_extra: str = "") -> str:
    addresses = ", ".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(count))
    return f"""\
name: many
components:
  dns: {{kind: dns, instances: 1, port: 5300, zone: shop.example.,{dns_extra}
         records: {{www: {{component: lb, addresses: [{addresses}]}}}}}}
  lb: {{kind: load_balancer, instances: {count}, port: {free_port()}}}
entry: [dns]
"""


async def test_oversized_udp_answers_are_truncated_then_complete_over_tcp() -> None:
    # 100 A records (about 1.6 kB): more than 512 bytes and more than 1232.
    settings = dns_settings(load_topology_text(_many_topology(100)), "dns", 0, port=0)
    async with DnsServer(settings) as server:
        query = dns.message.make_query(WWW, "A")
        udp = await dns.asyncquery.udp(query, "127.0.0.1", port=server.port, timeout=2)
        assert udp.flags & dns.flags.TC and not udp.answer
        assert len(udp.to_wire()) <= 512
        edns = dns.message.make_query(WWW, "A", use_edns=0, payload=4096)
        udp = await dns.asyncquery.udp(edns, "127.0.0.1", port=server.port, timeout=2)
        assert udp.flags & dns.flags.TC and len(udp.to_wire()) <= 1232
        full, used_tcp = await dns.asyncquery.udp_with_fallback(
            query, "127.0.0.1", port=server.port, timeout=2
        )
        assert used_tcp and not full.flags & dns.flags.TC
        assert sum(len(rrset) for rrset in full.answer) == 100
        # The stub resolver does the same on its own.
        assert len(await _addresses(_resolver(server.port))) == 100


async def test_tcp_answers_pipelined_queries_in_order() -> None:
    settings = dns_settings(load_topology_text(_many_topology(3)), "dns", 0, port=0)
    async with DnsServer(settings) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            queries = [dns.message.make_query(n, "A") for n in (WWW, "nope.shop.example.", WWW)]
            writer.write(b"".join(q.to_wire(prepend_length=True) for q in queries))
            rcodes = []
            for q in queries:
                async with asyncio.timeout(5):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    reply = dns.message.from_wire(await reader.readexactly(size))
                assert reply.id == q.id
                rcodes.append(reply.rcode())
            assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
        finally:
            writer.close()


async def test_rate_limit_drops_and_slips_over_udp_but_not_tcp() -> None:
    text = _many_topology(3, " rate_limit: {responses_per_second: 2, burst: 5, slip: 2},")
    settings = dns_settings(load_topology_text(text), "dns", 0, port=0)
    async with DnsServer(settings) as server:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", server.port))
            for i in range(20):
                query = dns.message.make_query(WWW, "A")
                query.id = i
                sock.send(query.to_wire())
            full = truncated = 0
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        data = await loop.sock_recv(sock, 4096)
                except TimeoutError:
                    break
                reply = dns.message.from_wire(data)
                if reply.flags & dns.flags.TC:
                    assert not reply.answer
                    truncated += 1
                else:
                    full += 1
        finally:
            sock.close()
        # 5 from the burst (one more if a token refilled meanwhile), then every 2nd slips.
        assert 5 <= full <= 6
        assert 6 <= truncated <= 8
        assert server.limiter.dropped >= 6
        # Over TCP the same client is answered: its address is proven.
        query = dns.message.make_query(WWW, "A")
        reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=server.port, timeout=2)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer


async def test_refused_outside_the_zone_and_soa_at_the_apex() -> None:
    settings = dns_settings(load_topology_text(_many_topology(2)), "dns", 0, port=0)
    async with DnsServer(settings) as server:
        outside = dns.message.make_query("example.com.", "A")
        reply = await dns.asyncquery.udp(outside, "127.0.0.1", port=server.port, timeout=2)
        assert reply.rcode() == dns.rcode.REFUSED and not reply.flags & dns.flags.RA
        soa = await _resolver(server.port).resolve("shop.example.", "SOA")
        assert soa.rrset is not None and soa.rrset.ttl == 3600


def test_the_command_serves_a_topology(dns_process: Callable[[str], DnsProcess]) -> None:
    server = dns_process(_many_topology(2))
    query = dns.message.make_query(WWW, "A")
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)
    assert {rd.to_text() for rd in reply.answer[0]} == {"10.0.0.1", "10.0.0.2"}
    assert "no instance of lb passes its health check" in server.output()
