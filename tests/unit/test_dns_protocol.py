"""The UDP and TCP protocol objects fed bytes through fake transports (no sockets)."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.rcode

from spofless.dns import DnsServer, dns_settings
from spofless.dns._server import _TcpProtocol, _UdpProtocol
from spofless.topology import load_topology_text
from tests.unit.test_dns_answer import TOPOLOGY


class FakeTransport:
    def __init__(self, peer: tuple[str, int] = ("192.0.2.9", 4000)) -> None:
        self.peer = peer
        self.sent: list[tuple[bytes, Any]] = []
        self.written = b""
        self.closed = self.aborted = False
        self.buffered = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _server(extra: str = "") -> DnsServer:
    text = TOPOLOGY.replace("    ttl: 7\n", f"    ttl: 7\n{extra}")
    return DnsServer(dns_settings(load_topology_text(text), "dns", 0, port=0))


def _frames(data: bytes) -> list[dns.message.Message]:
    out = []
    while data:
        size = int.from_bytes(data[:2], "big")
        out.append(dns.message.from_wire(data[2 : 2 + size]))
        data = data[2 + size :]
    return out


async def test_tcp_frames_split_anywhere_and_pipelined_are_answered_in_order() -> None:
    server = _server()
    proto = _TcpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    queries = [dns.message.make_query(n, "A") for n in ("www.shop.example.", "x.shop.example.")]
    stream = b"".join(q.to_wire(prepend_length=True) for q in queries)
    for i in range(len(stream)):  # one byte at a time
        proto.data_received(stream[i : i + 1])
    replies = _frames(transport.written)
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    proto.connection_lost(None)
    assert not server._connections


async def test_tcp_garbage_frame_gets_formerr_and_the_connection_goes_on() -> None:
    server = _server()
    proto = _TcpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    garbage = b"\x12\x34\x00\x00\x00\x01" + b"\xff" * 20
    good = dns.message.make_query("www.shop.example.", "A")
    proto.data_received(
        len(garbage).to_bytes(2, "big")
        + garbage
        + b"\x00\x03abc"
        + good.to_wire(prepend_length=True)
    )
    data = transport.written
    first = data[2 : 2 + int.from_bytes(data[:2], "big")]
    assert first[:2] == b"\x12\x34" and first[3] & 0x0F == dns.rcode.FORMERR
    rest = data[2 + len(first) :]
    assert _frames(rest)[0].id == good.id  # the 3-byte frame got nothing; framing held
    assert not transport.aborted
    proto.connection_lost(None)


async def test_a_tcp_client_that_does_not_read_is_dropped() -> None:
    server = _server()
    proto = _TcpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    transport.buffered = 2 << 20
    proto.data_received(
        dns.message.make_query("www.shop.example.", "A").to_wire(prepend_length=True)
    )
    assert transport.aborted
    proto.connection_lost(None)


async def test_tcp_connections_beyond_the_limit_are_closed_at_once() -> None:
    server = _server()
    limit = server.settings.max_tcp_connections
    protos = [_TcpProtocol(server) for _ in range(limit + 1)]
    transports = [FakeTransport() for _ in protos]
    for proto, transport in zip(protos, transports, strict=True):
        proto.connection_made(transport)  # type: ignore[arg-type]
    assert not any(t.aborted for t in transports[:limit]) and transports[limit].aborted
    for proto in protos:
        proto.connection_lost(None)
    assert not server._connections


def test_udp_answers_the_sender_and_ignores_port_zero() -> None:
    server = _server()
    proto = _UdpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    query = dns.message.make_query("www.shop.example.", "A").to_wire()
    proto.datagram_received(query, ("192.0.2.9", 4000))
    proto.datagram_received(query, ("192.0.2.9", 0))
    proto.datagram_received(b"\x00", ("192.0.2.9", 4000))
    assert len(transport.sent) == 1 and transport.sent[0][1] == ("192.0.2.9", 4000)
    assert dns.message.from_wire(transport.sent[0][0]).answer


def test_udp_rate_limit_applies_per_netblock() -> None:
    server = _server("    rate_limit: {responses_per_second: 1, burst: 2, slip: 2}\n")
    proto = _UdpProtocol(server)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    query = dns.message.make_query("www.shop.example.", "A").to_wire()
    for _ in range(6):
        proto.datagram_received(query, ("192.0.2.9", 4000))
    flags = [dns.message.from_wire(data).flags for data, _ in transport.sent]
    assert len(flags) == 4  # 2 answers, then of 4 limited: drop, slip, drop, slip
    assert [bool(f & dns.flags.TC) for f in flags] == [False, False, True, True]
    proto.datagram_received(query, ("198.51.100.1", 4000))  # another netblock
    assert not dns.message.from_wire(transport.sent[-1][0]).flags & dns.flags.TC
