"""The tcp protocol objects fed with bytes over fake transports (no sockets)."""

from __future__ import annotations

import asyncio

from spofless.lb import settings_from_flags
from spofless.lb._balancer import Balancer
from spofless.lb._splice import SPLICE_THRESHOLD
from spofless.lb._tcp import TcpClient, TcpUpstream
from spofless.topology import LbOptions
from tests.unit.lb_fakes import FakeTransport


def _client() -> tuple[TcpClient, FakeTransport]:
    settings = settings_from_flags(
        listen="127.0.0.1:0", backends=["127.0.0.1:9"], mode="tcp", options=LbOptions()
    )
    bal = Balancer(settings)
    bal.loop = asyncio.get_running_loop()
    client = TcpClient(bal)
    t = FakeTransport()
    client.transport = t  # type: ignore[assignment]
    return client, t


async def test_bulk_from_a_backend_not_yet_adopted_is_relayed_without_splicing() -> None:
    """A backend that speaks first can deliver a bulk read between connection_made and
    the moment the client adopts the connection: relay it, switch later."""
    client, ct = _client()
    up = TcpUpstream(client)
    ut = FakeTransport()
    up.connection_made(ut)  # type: ignore[arg-type]
    assert client.up is None
    data = b"x" * (SPLICE_THRESHOLD + 1)
    up.data_received(data)
    assert bytes(ct.out) == data
    assert not client.splicing and client.splice  # still eligible once adopted
    assert ct.reading and ut.reading


async def test_a_client_that_sends_much_before_the_backend_connects_is_resumed() -> None:
    """Reading stops while what a client sent waits for the backend connection, and
    starts again once the connection is adopted (it once stayed stopped for good)."""
    client, ct = _client()
    for _ in range(5):
        client.data_received(b"y" * 65536)
    assert not ct.reading and client.buffer_paused
    up = TcpUpstream(client)
    ut = FakeTransport()
    up.connection_made(ut)  # type: ignore[arg-type]
    assert not ct.reading  # not before the connection is adopted
