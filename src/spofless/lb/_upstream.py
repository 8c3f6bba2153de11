"""The backend side of L7 proxying: pooled connections to one backend.

An `UpstreamConn` sends one request at a time (from a `ClientConn` of
`_http`), relays the response bytes to the client as they arrive while
httptools finds where the response ends, then goes back to its backend's
pool. A response's head is read whole first: the header fields its Connection
header names (RFC 9110 7.6.1) are about the backend's hop and are removed.
Failures before any response byte go back to the client connection, which
retries or answers an error.
"""

from __future__ import annotations

import asyncio
import re
from time import monotonic
from typing import TYPE_CHECKING, cast

import httptools

from spofless.health import connect_failure
from spofless.lb._backend import response_class
from spofless.lb._policy import IDEMPOTENT

if TYPE_CHECKING:
    from spofless.lb._backend import Backend
    from spofless.lb._balancer import Balancer
    from spofless.lb._http import Request


async def open_upstream(bal: Balancer, b: Backend, req: Request) -> None:
    """Open a new connection to `b` for `req` (the one coroutine, off the per-request path)."""
    loop = bal.loop or asyncio.get_running_loop()
    client = req.conn
    try:
        async with asyncio.timeout(bal.options.connect_timeout):
            _, up = await loop.create_connection(lambda: UpstreamConn(bal, b), b.host, b.port)
    except TimeoutError:
        client.upstream_failed(req, "connect timeout", sent=False, definite=False)
        return
    except OSError as exc:
        detail, definite = connect_failure(exc)
        client.upstream_failed(req, detail, sent=False, definite=definite)
        return
    if client.closed or req.backend is not b:
        b.finish(None)  # the client has gone: the new connection joins the pool
        up.release_idle()
        return
    up.attach(req)


class UpstreamConn(asyncio.Protocol):
    """A connection to one backend, pooled between requests."""

    def __init__(self, bal: Balancer, backend: Backend) -> None:
        self.bal = bal
        self.backend = backend
        self.loop = bal.loop or asyncio.get_event_loop()
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.req: Request | None = None
        self.deadline = 0.0
        self.status = 0
        self.done = False
        self.keep = False
        self.reset_parser = False
        # The first head of the current response while it is incomplete (None: relaying).
        self.head: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.bal.timed.add(self)

    def attach(self, req: Request) -> None:
        """Send `req` on this connection."""
        transport = self.transport
        assert transport is not None
        self.req = req
        req.up = self
        self.backend.inflight.add(self)
        if req.body:
            transport.write(req.head + b"".join(req.body))
            if not req.replayable:
                req.body = []
        else:
            transport.write(req.head)
        req.sent = True
        self.deadline = self.loop.time() + self.bal.options.response_timeout
        if req.conn.reading_paused:
            req.conn.request_sent(req)

    def _detach(self) -> None:
        self.req = None
        self.head = None
        self.backend.inflight.discard(self)

    def data_received(self, data: bytes) -> None:
        req = self.req
        if req is None:  # an idle connection must stay silent
            self.close()
            return
        if not req.response_started or self.head is not None:
            # The first head of a response is read whole before a byte of it is relayed.
            req.response_started = True
            if self.head is not None:
                data = self.head + data
            # One scan finds the head's end, or a Connection header before it.
            m = _HEAD_SCAN.search(data)
            end = -1 if m is None else m.start()
            if m is not None and m.end() - end != 4:  # a Connection header: rewrite
                end = data.find(b"\r\n\r\n", end)
                if end >= 0:
                    data = _without_connection_options(data, end)
            if end < 0:
                self.head = None
                if len(data) > self.bal.options.max_header_bytes:
                    self._broken(req)
                    return
                self.head = data
                self.deadline = self.loop.time() + self.bal.options.response_timeout
                return
            self.head = None
            if self.bal.draining:
                # Stopping: announce the close so that the client does not reuse the
                # connection (closing it unannounced races with its next request).
                data = _announce_close(data)
                req.conn.close_after_response()
        client = req.conn
        if client.transport is not None and not client.closed:
            client.transport.write(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._broken(req)
            return
        if self.done:
            self._finish(req)
        else:  # more to come: the response timeout counts from its last bytes
            self.deadline = self.loop.time() + self.bal.options.response_timeout

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        req = self.req
        if req is not None and req.method == b"HEAD" and self.status >= 200:
            # httptools cannot be told that a HEAD response has no body: end it here.
            self.done = True
            self.keep = self.parser.should_keep_alive()
            self.reset_parser = True

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:
            return  # an interim response; the final one follows
        self.keep = self.parser.should_keep_alive()  # llhttp forgets it after this callback
        self.done = True

    def _finish(self, req: Request) -> None:
        b = self.backend
        keep = self.keep and req.complete
        if self.reset_parser:
            self.parser = httptools.HttpResponseParser(self)
            self.reset_parser = False
        self.done = False
        self.req = None  # _detach(), inlined on the per-request path
        b.inflight.discard(self)
        req.up = None
        status = self.status
        # response_class(status), inlined on the per-request path
        b.finish(status // 100 if 100 <= status < 600 else 0, monotonic() - req.started)
        if status >= 500:
            self.bal.passive_failure(b, f"status {status}")
        else:
            b.consecutive_failures = 0
        if keep:
            self.release_idle()
        else:
            self.close()
        req.conn.response_done(req, True)

    def _broken(self, req: Request) -> None:
        """The backend sent something that is not HTTP: drop both sides."""
        self._detach()
        self.backend.finish(0)
        self.bal.passive_failure(self.backend, "malformed response")
        self.close()
        req.conn.cut_short(req)

    def release_idle(self) -> None:
        """Back to the pool, unless the backend left rotation or the worker drains."""
        b = self.backend
        # weight > 0: eligible (and not weighted out), kept by the balancer on every change;
        # cheaper than the `eligible` property on the per-request path.
        if b.weight > 0 and not self.bal.draining and self.transport is not None:
            self.deadline = self.loop.time() + self.bal.options.backend_idle_timeout
            b.idle.append(self)
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """The backend was marked down: retry an unanswered idempotent request elsewhere."""
        req = self.req
        if req is None or req.response_started or req.method not in IDEMPOTENT:
            return
        self._detach_and_fail(req, "backend down", timeout=False)

    def on_timeout(self) -> None:
        req = self.req
        if req is None:
            self.close()  # idle too long in the pool
            return
        if req.response_started:
            self._detach()
            self.backend.finish(0)
            self.close()
            req.conn.cut_short(req)
            return
        self._detach_and_fail(req, "response timeout", timeout=True)

    def _detach_and_fail(self, req: Request, detail: str, *, timeout: bool) -> None:
        self._detach()
        if self.transport is not None:
            self.transport.abort()
        req.conn.upstream_failed(req, detail, sent=True, definite=False, timeout=timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bal.timed.discard(self)
        b = self.backend
        if self in b.idle:
            b.idle.remove(self)
        req = self.req
        if req is None:
            return
        self._detach()
        if not req.response_started:
            # A pooled connection the backend closed, or a reset: retried when safe.
            req.conn.upstream_failed(req, "connection reset", sent=True, definite=False)
            return
        # Mid-response: a close-delimited body ends here; anything else is cut short.
        b.finish(response_class(self.status))
        req.conn.cut_short(req)


def _announce_close(data: bytes) -> bytes:
    """`Connection: close` inserted after the status line of a response's first bytes."""
    end = data.find(b"\r\n")
    if end < 0:
        return data  # a status line split across reads: the close goes unannounced
    return data[: end + 2] + b"Connection: close\r\n" + data[end + 2 :]


# The end of a response head, or a Connection header before it: the common case (no
# Connection header) costs one scan of the head.
_HEAD_SCAN = re.compile(rb"\r\n(?:\r\n|connection[ \t]*:)", re.IGNORECASE)
_KEPT_OPTIONS = (b"close", b"keep-alive")  # about the client's connection too: kept


def _without_connection_options(data: bytes, end: int) -> bytes:
    """The response without the fields its Connection headers name (RFC 9110 7.6.1).

    `data[:end]` is the head without its final CRLF CRLF. Close and keep-alive stay in
    the Connection header (they say whether the client's connection lasts); the
    Keep-Alive field, named by keep-alive, is about the backend's connection and goes.
    """
    lines = data[:end].split(b"\r\n")
    named: set[bytes] = set()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    named.discard(b"")
    # Framing is never dropped: the client must read the response as the parser did.
    drop = named - {b"close", b"content-length", b"transfer-encoding"}
    kept = [t for t in _KEPT_OPTIONS if t in named]
    out = [lines[0]]
    connection_written = False
    for line in lines[1:]:
        name = line.partition(b":")[0].strip().lower()
        if name == b"connection":
            if kept and not connection_written:
                out.append(b"Connection: " + b", ".join(kept))
                connection_written = True
        elif name not in drop:
            out.append(line)
    return b"\r\n".join(out) + data[end:]
