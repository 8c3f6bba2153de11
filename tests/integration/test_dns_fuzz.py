"""Random and malformed packets against `spofless dns` (the real process, over UDP and TCP):
it never crashes, never logs an error, and keeps answering valid queries."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import dns.edns
import dns.message
import dns.rcode
import pytest
from dns_fixtures import DnsProcess, dns_process_starter, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

TOPOLOGY = f"""\
name: fuzz
components:
  dns: {{kind: dns, instances: 1, port: 5300, zone: shop.example.,
         records: {{www: {{component: lb, addresses: [10.0.0.1, "2001:db8::1"]}}}},
         regions: {{}}, rate_limit: {{responses_per_second: 0}}}}
  lb: {{kind: load_balancer, instances: 2, port: {free_port()}}}
entry: [dns]
"""

VALID = [
    dns.message.make_query("www.shop.example.", "A").to_wire(),
    dns.message.make_query("shop.example.", "NS", use_edns=0, payload=1232).to_wire(),
    dns.message.make_query(
        "www.shop.example.", "AAAA", use_edns=0, options=[dns.edns.ECSOption("192.0.2.0", 24)]
    ).to_wire(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid query with some bytes changed, then maybe cut short or extended."""
    wire = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        wire[draw(st.integers(0, len(wire) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(wire) + 8))
    return bytes(wire[:cut]) + draw(st.binary(max_size=max(0, cut - len(wire))))


@st.composite
def header_then_noise(draw: st.DrawFn) -> bytes:
    """A plausible query header (QR=0, random counts) followed by noise."""
    header = bytearray(draw(st.binary(min_size=12, max_size=12)))
    header[2] &= 0x7F
    return bytes(header) + draw(st.binary(max_size=300))


PACKETS = st.one_of(st.binary(max_size=700), mutated(), header_then_noise())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsProcess]:
    starter = dns_process_starter(tmp_path_factory.mktemp("dnsfuzz"))
    start: Callable[[str], DnsProcess] = next(starter)
    try:
        yield start(TOPOLOGY)
    finally:
        starter.close()


def _udp_answer_ok(port: int) -> None:
    query = dns.message.make_query("www.shop.example.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(query.to_wire(), ("127.0.0.1", port))
        while True:  # late answers to earlier fuzz datagrams may still arrive first
            reply = dns.message.from_wire(sock.recv(65535))
            if reply.id == query.id:
                break
    assert reply.rcode() == dns.rcode.NOERROR
    assert {rd.to_text() for rd in reply.answer[0]} == {"10.0.0.1"}


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(packet=PACKETS)
def test_fuzzed_udp_datagrams(server: DnsProcess, packet: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(packet, ("127.0.0.1", server.port))
    _udp_answer_ok(server.port)
    assert server.proc.poll() is None


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(packet=PACKETS, raw=st.binary(max_size=100))
def test_fuzzed_tcp_frames_and_streams(server: DnsProcess, packet: bytes, raw: bytes) -> None:
    # A well-framed bad message, then a valid query on the same connection: framing holds.
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as sock:
        query = dns.message.make_query("www.shop.example.", "A")
        sock.sendall(len(packet).to_bytes(2, "big") + packet + query.to_wire(prepend_length=True))
        while True:
            size = int.from_bytes(_recv_exactly(sock, 2), "big")
            reply = dns.message.from_wire(_recv_exactly(sock, size))
            if reply.id == query.id and reply.question == query.question:
                break
        assert reply.rcode() == dns.rcode.NOERROR
    # An unframed stream of noise, then the connection goes away mid-message.
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as sock:
        sock.sendall(raw)
    _udp_answer_ok(server.port)
    assert server.proc.poll() is None


def test_the_fuzzing_left_no_error_in_the_log(server: DnsProcess) -> None:
    _udp_answer_ok(server.port)
    log = server.output()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
