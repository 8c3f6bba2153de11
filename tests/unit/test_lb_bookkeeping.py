"""Every exit of a request or tcp connection gives its backend slot back.

The protocol objects run over fake transports; new backend connections are
answered by the test through `ConnectingLoop`, so connects can succeed, fail
or finish after the client has gone. After each path the backend's counters
(`active`, `inflight`, the pool's queue) are back to 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from spofless.lb import settings_from_flags
from spofless.lb._backend import Backend
from spofless.lb._balancer import Balancer
from spofless.lb._http import ClientConn
from spofless.lb._tcp import TcpClient
from spofless.lb._upstream import UpstreamConn
from spofless.topology import LbOptions
from tests.unit.lb_fakes import FakeTransport

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


class ConnectingLoop:
    """The running loop, except that the test answers each `create_connection`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[tuple[asyncio.Future[Any], Callable[[], asyncio.Protocol]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)

    async def create_connection(
        self, factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> Any:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending.append((fut, factory))
        return await fut

    async def connect(self) -> tuple[Any, FakeTransport]:
        """Let the oldest pending connect succeed."""
        await _settle()
        fut, factory = self.pending.pop(0)
        proto = factory()
        t = FakeTransport()
        proto.connection_made(t)  # type: ignore[arg-type]
        fut.set_result((t, proto))
        await _settle()
        return proto, t

    async def refuse(self) -> None:
        await _settle()
        fut, _ = self.pending.pop(0)
        fut.set_exception(ConnectionRefusedError())
        await _settle()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _balancer(mode: str = "http", **opts: Any) -> tuple[Balancer, ConnectingLoop]:
    settings = settings_from_flags(
        listen="127.0.0.1:0",
        backends=["127.0.0.1:9", "127.0.0.1:10"],
        mode=mode,
        options=LbOptions(**opts),
    )
    bal = Balancer(settings)
    loop = ConnectingLoop(asyncio.get_running_loop())
    bal.loop = loop  # type: ignore[assignment]
    return bal, loop


def _client(bal: Balancer) -> tuple[ClientConn, FakeTransport]:
    client = ClientConn(bal)
    t = FakeTransport()
    client.connection_made(t)  # type: ignore[arg-type]
    return client, t


def _pooled(bal: Balancer, b: Backend) -> tuple[UpstreamConn, FakeTransport]:
    up = UpstreamConn(bal, b)
    t = FakeTransport()
    up.connection_made(t)  # type: ignore[arg-type]
    b.idle.append(up)
    return up, t


def _sent(bal: Balancer, request: bytes = GET) -> tuple[ClientConn, FakeTransport, UpstreamConn]:
    """A new client whose `request` went out on one of a connection per backend, pooled."""
    for b in bal.backends.values():
        _pooled(bal, b)
    client, ct = _client(bal)
    client.data_received(request)
    (up,) = (u for b in bal.backends.values() for u in b.inflight)
    assert isinstance(up, UpstreamConn)
    return client, ct, up


def _assert_released(bal: Balancer) -> None:
    for b in bal.backends.values():
        assert b.active == 0, b.name
        assert not b.inflight, b.name
    assert not bal.queue


async def test_success_over_a_new_connection() -> None:
    bal, loop = _balancer()
    client, ct = _client(bal)
    client.data_received(GET)
    up, _ = await loop.connect()
    up.data_received(OK)
    assert ct.out.endswith(b"hi") and not ct.closed
    _assert_released(bal)
    assert sum(len(b.idle) for b in bal.backends.values()) == 1


async def test_connect_failure_then_retry_elsewhere() -> None:
    bal, loop = _balancer()
    client, ct = _client(bal)
    client.data_received(GET)
    await loop.refuse()
    up, _ = await loop.connect()  # the retry, on the other backend
    up.data_received(OK)
    assert ct.out.startswith(b"HTTP/1.1 200")
    _assert_released(bal)
    assert sum(b.retries for b in bal.backends.values()) == 1


async def test_connect_failure_everywhere_answers_503() -> None:
    bal, loop = _balancer(retries=1)
    client, ct = _client(bal)
    client.data_received(GET)
    await loop.refuse()
    await loop.refuse()
    assert ct.out.startswith(b"HTTP/1.1 503")
    _assert_released(bal)


async def test_reset_of_a_pooled_connection_is_retried() -> None:
    bal, _ = _balancer()
    first, second = bal.backends.values()
    up1, _ = _pooled(bal, first)
    up2, _ = _pooled(bal, second)
    client, ct = _client(bal)
    client.data_received(GET)
    sent = up1 if up1.req is not None else up2
    other = up2 if sent is up1 else up1
    sent.connection_lost(ConnectionResetError())
    other.data_received(OK)
    assert ct.out.startswith(b"HTTP/1.1 200")
    _assert_released(bal)


async def test_reset_after_a_post_was_sent_answers_502() -> None:
    bal, _ = _balancer()
    _, ct, up = _sent(bal, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    up.connection_lost(ConnectionResetError())
    assert ct.out.startswith(b"HTTP/1.1 502")
    _assert_released(bal)


async def test_reset_mid_response_cuts_the_client() -> None:
    bal, _ = _balancer()
    _, ct, up = _sent(bal)
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi")
    up.connection_lost(ConnectionResetError())
    assert ct.closed
    _assert_released(bal)


async def test_response_timeout_before_and_after_the_first_byte() -> None:
    bal, _ = _balancer(retries=0)
    _, ct, up = _sent(bal)
    up.on_timeout()
    assert ct.out.startswith(b"HTTP/1.1 504")
    _assert_released(bal)

    bal, _ = _balancer()
    _, ct, up = _sent(bal)
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi")
    up.on_timeout()
    assert ct.closed
    _assert_released(bal)


async def test_malformed_response() -> None:
    bal, _ = _balancer()
    _, ct, up = _sent(bal)
    up.data_received(b"NOT HTTP\r\n\r\n")
    assert ct.closed
    _assert_released(bal)


async def test_client_gone_while_connecting() -> None:
    bal, loop = _balancer()
    client, _ = _client(bal)
    client.data_received(GET)
    client.connection_lost(None)
    await loop.connect()
    _assert_released(bal)


async def test_client_gone_while_connecting_wakes_the_queue() -> None:
    """The slot of a request whose client left during the connect goes to the next in line."""
    bal, loop = _balancer(max_conns_per_backend=1)
    gone, _ = _client(bal)
    gone.data_received(GET)
    busy, _ = _client(bal)
    busy.data_received(GET)
    waiting, wt = _client(bal)
    waiting.data_received(GET)
    assert len(bal.queue) == 1  # both backends at their limit
    gone.connection_lost(None)
    await loop.connect()  # the connect of the client that left
    await _settle()
    assert not bal.queue
    assert waiting.active is not None and waiting.active.up is not None
    waiting.active.up.data_received(OK)
    assert wt.out.startswith(b"HTTP/1.1 200")
    up2, _ = await loop.connect()  # the busy client's connect
    up2.data_received(OK)
    _assert_released(bal)


async def test_client_gone_mid_response() -> None:
    bal, _ = _balancer()
    client, _, up = _sent(bal)
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi")
    client.connection_lost(None)
    up.connection_lost(None)  # the close the client's going caused
    _assert_released(bal)


async def test_queued_request_of_a_client_gone_does_not_take_the_slot() -> None:
    bal, _ = _balancer(max_conns_per_backend=1)
    ups = [_pooled(bal, b)[0] for b in bal.backends.values()]
    for _ in range(2):
        c, _ = _client(bal)
        c.data_received(GET)
    left, _ = _client(bal)
    left.data_received(GET)
    waiting, wt = _client(bal)
    waiting.data_received(GET)
    assert len(bal.queue) == 2
    left.connection_lost(None)
    ups[0].data_received(OK)
    await _settle()
    assert waiting.active is not None and waiting.active.up is not None
    waiting.active.up.data_received(OK)
    assert wt.out.startswith(b"HTTP/1.1 200")
    ups[1].data_received(OK)
    _assert_released(bal)


async def test_drain_closes_after_the_response() -> None:
    bal, _ = _balancer()
    bal.draining = True
    _, ct, up = _sent(bal)
    up.data_received(OK)
    assert ct.closed and b"Connection: close" in ct.out
    _assert_released(bal)


async def test_tcp_success_and_client_gone_while_connecting() -> None:
    bal, loop = _balancer(mode="tcp")
    client = TcpClient(bal)
    ct = FakeTransport()
    client.connection_made(ct)  # type: ignore[arg-type]
    await loop.connect()
    client.connection_lost(None)
    _assert_released(bal)

    client = TcpClient(bal)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    client.connection_lost(None)
    _, ut = await loop.connect()
    assert ut.closed
    _assert_released(bal)


async def test_tcp_connect_failure_then_retry() -> None:
    bal, loop = _balancer(mode="tcp")
    client = TcpClient(bal)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    await loop.refuse()
    await loop.connect()
    client.connection_lost(None)
    _assert_released(bal)
