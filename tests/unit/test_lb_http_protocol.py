"""The HTTP protocol objects fed with bytes over fake transports (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spofless.lb import settings_from_flags
from spofless.lb._balancer import Balancer
from spofless.lb._http import ClientConn
from spofless.lb._upstream import UpstreamConn
from spofless.topology import LbOptions
from tests.unit.lb_fakes import FakeTransport

_PREFIXES = [b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nContent-Length: 5\r\n"]


def _setup(**opts: Any) -> tuple[Balancer, ClientConn, FakeTransport, UpstreamConn, FakeTransport]:
    settings = settings_from_flags(
        listen="127.0.0.1:0", backends=["127.0.0.1:9"], options=LbOptions(**opts)
    )
    bal = Balancer(settings)
    bal.loop = asyncio.get_running_loop()
    backend = bal.backends["127.0.0.1:9"]
    up = UpstreamConn(bal, backend)
    up_t = FakeTransport()
    up.connection_made(up_t)  # type: ignore[arg-type]
    backend.idle.append(up)
    client = ClientConn(bal)
    client_t = FakeTransport()
    client.connection_made(client_t)  # type: ignore[arg-type]
    return bal, client, client_t, up, up_t


async def test_request_is_rewritten_and_response_relayed() -> None:
    bal, client, ct, up, ut = _setup()
    client.data_received(
        b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n"
        b"X-Secret: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
    )
    sent = bytes(ut.out)
    assert sent.startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n")
    assert b"X-Secret" not in sent and b"Connection:" not in sent
    assert b"X-Forwarded-For: 1.2.3.4, 10.0.0.7\r\n" in sent
    assert b"Forwarded: for=10.0.0.7;proto=http\r\n" in sent and b"Via: 1.1 spofless\r\n" in sent
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert bytes(ct.out) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert not ct.closed and bal.backends["127.0.0.1:9"].idle == [up]  # back in the pool


async def test_pipelined_requests_are_answered_in_order() -> None:
    _, client, ct, up, ut = _setup()
    client.data_received(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ut.out.count(b"GET ") == 1  # the second waits for the first response
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
    assert ut.out.count(b"GET ") == 2 and b"GET /2" in ut.out
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
    assert ct.out.endswith(b"\r\n\r\n1" + b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")


async def test_chunked_request_body_is_reframed() -> None:
    _, client, _, _, ut = _setup()
    client.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" in ut.out


async def test_head_response_without_body_completes() -> None:
    _, client, _, up, ut = _setup()
    client.data_received(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /n HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    assert b"GET /n" in ut.out  # the HEAD response ended at its head


async def test_conflicting_framing_is_rejected() -> None:
    _, client, ct, _, ut = _setup()
    client.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert ct.out.startswith(b"HTTP/1.1 400") and ct.closed and not ut.out


async def test_duplicate_content_length_is_rejected() -> None:
    _, client, ct, _, _ = _setup()
    client.data_received(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 400") and ct.closed


async def test_malformed_request_gets_400() -> None:
    _, client, ct, _, _ = _setup()
    client.data_received(b"GARBAGE\x00\x01 nonsense\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 400") and ct.closed


async def test_oversized_head_gets_431() -> None:
    _, client, ct, _, _ = _setup(max_header_bytes=1024)
    client.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2000)
    assert ct.out.startswith(b"HTTP/1.1 431") and ct.closed


async def test_body_over_limit_gets_413() -> None:
    _, client, ct, _, _ = _setup(max_body_bytes=10)
    client.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 413")


async def test_slow_head_gets_408_on_timeout() -> None:
    _, client, ct, _, _ = _setup()
    client.data_received(b"GET / HTTP/1.1\r\nHo")
    client.on_timeout()
    assert ct.out.startswith(b"HTTP/1.1 408") and ct.closed


async def test_idempotent_request_is_retried_after_a_reset() -> None:
    bal, client, ct, up, ut = _setup()
    other = UpstreamConn(bal, bal.backends["127.0.0.1:9"])
    other_t = FakeTransport()
    other.connection_made(other_t)  # type: ignore[arg-type]
    bal.backends["127.0.0.1:9"].idle.insert(0, other)
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"GET /" in ut.out
    up.connection_lost(ConnectionResetError())  # the pooled connection was dead
    assert b"GET /" in other_t.out  # replayed on the next connection
    other.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 200")


async def test_post_is_not_replayed_after_it_was_sent() -> None:
    _, client, ct, up, _ = _setup()
    client.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    up.connection_lost(ConnectionResetError())
    assert ct.out.startswith(b"HTTP/1.1 502")


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=6), prefix=st.sampled_from(_PREFIXES))
async def test_random_bytes_never_escape_the_protocol(chunks: list[bytes], prefix: bytes) -> None:
    _, client, ct, _, _ = _setup(max_header_bytes=1024)
    for chunk in [prefix, *chunks]:
        if ct.closed:
            break
        client.data_received(chunk)  # must not raise, whatever the bytes
    client.on_timeout()
    if ct.out and not ct.out.startswith(b"HTTP/1.1 "):
        raise AssertionError(bytes(ct.out[:40]))


async def test_a_stopping_worker_announces_the_close() -> None:
    bal, client, ct, up, _ = _setup()
    bal.draining = True
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert bytes(ct.out) == b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    assert ct.closed  # after the response, not before


# -- RFC 9110/9112 requirements on an intermediary ------------------------------


async def test_http11_request_without_host_gets_400() -> None:
    _, client, ct, _, ut = _setup()
    client.data_received(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 400") and ct.closed and not ut.out


async def test_http10_request_without_host_is_forwarded() -> None:
    _, client, _, _, ut = _setup()
    client.data_received(b"GET / HTTP/1.0\r\n\r\n")
    assert ut.out.startswith(b"GET / HTTP/1.0\r\n")


async def test_two_host_headers_get_400() -> None:
    _, client, ct, _, ut = _setup()
    client.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 400") and ct.closed and not ut.out


async def test_headers_named_in_any_connection_header_are_removed() -> None:
    _, client, _, _, ut = _setup()
    client.data_received(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-One\r\nConnection: x-two\r\n"
        b"X-One: 1\r\nX-Two: 2\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nX-Kept: 3\r\n\r\n"
    )
    sent = bytes(ut.out)
    for name in (b"X-One", b"X-Two", b"Connection", b"Keep-Alive", b"Upgrade"):
        assert name not in sent
    assert b"X-Kept: 3\r\n" in sent


async def test_te_is_not_forwarded() -> None:
    _, client, _, _, ut = _setup()
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nTE: gzip, trailers\r\n\r\n")
    assert ut.out.startswith(b"GET / HTTP/1.1\r\n") and b"TE:" not in ut.out
    assert b"gzip" not in ut.out


async def test_max_forwards_zero_options_is_answered_here() -> None:
    _, client, ct, _, ut = _setup()
    client.data_received(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 200 OK\r\n") and not ut.out and not ct.closed
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection goes on
    assert ut.out.startswith(b"GET / HTTP/1.1\r\n")


async def test_max_forwards_zero_trace_echoes_without_credentials() -> None:
    _, client, ct, _, ut = _setup()
    client.data_received(
        b"TRACE /t HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\nCookie: s=1\r\nX-A: b\r\n\r\n"
    )
    out = bytes(ct.out)
    assert out.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: message/http\r\n") and not ut.out
    assert out.endswith(b"TRACE /t HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\nX-A: b\r\n\r\n")
    assert b"s=1" not in out


async def test_max_forwards_is_decremented_for_options_and_trace_only() -> None:
    _, client, _, up, ut = _setup()
    client.data_received(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nMax-Forwards: 3\r\n\r\n")
    assert b"Max-Forwards: 2\r\n" in ut.out
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n")
    assert ut.out.count(b"Max-Forwards: 0\r\n") == 1  # a GET goes on untouched


async def test_max_forwards_not_a_number_gets_400() -> None:
    _, client, ct, _, ut = _setup()
    client.data_received(b"TRACE / HTTP/1.1\r\nHost: x\r\nMax-Forwards: many\r\n\r\n")
    assert ct.out.startswith(b"HTTP/1.1 400") and not ut.out


async def test_interim_responses_are_relayed_before_the_final_one() -> None:
    bal, client, ct, up, _ = _setup()
    client.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )
    up.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert client.active is not None  # not done: the final response follows
    client.data_received(b"x")
    up.data_received(b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n")
    up.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert bytes(ct.out).count(b"HTTP/1.1 ") == 3 and ct.out.endswith(
        b"201 Created\r\nContent-Length: 0\r\n\r\n"
    )
    b = bal.backends["127.0.0.1:9"]
    assert b.responses[2] == 1 and b.responses[1] == 0 and b.active == 0


async def test_204_and_304_end_at_their_head() -> None:
    _, client, ct, up, ut = _setup()
    client.data_received(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert b"GET /2" in ut.out  # the 204 ended without a body
    client.data_received(b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
    assert b"GET /3" in ut.out  # the 304 too, whatever its Content-Length says
    assert not ct.closed


async def test_headers_a_response_names_in_connection_are_removed() -> None:
    # RFC 9110 7.6.1 holds for responses too: options the backend names are about its
    # hop; close and keep-alive stay, the Keep-Alive field goes with its option.
    _, client, ct, up, _ = _setup()
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(
        b"HTTP/1.1 200 OK\r\nconnection: X-Backend-Secret, keep-alive\r\n"
        b"X-Backend-Secret: s\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"
    )
    out = bytes(ct.out)
    assert out == b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"


async def test_a_response_head_split_across_reads_is_rewritten_whole() -> None:
    _, client, ct, up, _ = _setup()
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(b"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-")
    assert bytes(ct.out) == b""  # the head is read whole before it is relayed
    up.data_received(b"A: 1\r\nX-B: 2\r\nContent-Length: 1\r\n\r\n!")
    assert bytes(ct.out) == b"HTTP/1.1 200 OK\r\nX-B: 2\r\nContent-Length: 1\r\n\r\n!"
    assert client.active is None  # the response ended and the next request may go


async def test_a_response_head_over_the_limit_is_a_broken_backend() -> None:
    bal, client, ct, up, _ = _setup(max_header_bytes=1024)
    client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    up.data_received(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 2000)
    assert ct.closed and bal.backends["127.0.0.1:9"].active == 0
