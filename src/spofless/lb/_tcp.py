"""L4 TCP proxying: a client connection piped to one backend connection.

Connect failures are retried on other backends (nothing was sent yet); after
that bytes flow both ways with flow control (a full write buffer on one side
pauses reading on the other) and half-closes are passed on. A connection that
carries bulk data is handed to splice(2) (`_splice`, option `tcp_splice`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from spofless.health import connect_failure
from spofless.lb import _splice
from spofless.lb._proxy_protocol import proxy_header
from spofless.lb._splice import SPLICE_THRESHOLD

if TYPE_CHECKING:
    from spofless.lb._backend import Backend
    from spofless.lb._balancer import Balancer

logger = logging.getLogger(__name__)


class TcpClient(asyncio.Protocol):
    def __init__(self, bal: Balancer) -> None:
        self.bal = bal
        self.loop = bal.loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.up: TcpUpstream | None = None
        self.buffer: list[bytes] = []  # what came before the backend connection was open
        self.buffer_paused = False  # reading stopped because `buffer` is full
        self.eof = False  # the client half-closed
        self.up_eof = False  # the backend half-closed
        self.closed = False
        self.tried: list[Backend] = []
        self.backend: Backend | None = None
        self.deadline = 0.0
        self.key = b""
        self.proxy_header = b""  # PROXY protocol header sent first to the backend
        self.splice = bal.options.tcp_splice and _splice.AVAILABLE
        self.splicing = False  # reading stopped on both sides: uvloop no longer moves bytes
        self.splicer: _splice.Splicer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.key = str(peer[0]).encode() if peer else b""
        version = self.bal.options.proxy_protocol
        if version != "none":
            local = transport.get_extra_info("sockname")
            self.proxy_header = proxy_header(
                version,
                (str(peer[0]), int(peer[1])) if peer else ("", 0),
                (str(local[0]), int(local[1])) if local else ("", 0),
            )
        self.bal.timed.add(self)
        self.deadline = self.loop.time() + self.bal.options.client_idle_timeout
        self._connect()

    def _connect(self) -> None:
        bal = self.bal
        b = bal.choose(bal.routes[0], self.key, self.tried)
        if b is None or len(self.tried) > bal.options.retries:
            if self.transport is not None:
                self.transport.close()
            return
        self.backend = b
        b.begin()
        self.loop.create_task(self._open(b))

    async def _open(self, b: Backend) -> None:
        bal = self.bal
        try:
            async with asyncio.timeout(bal.options.connect_timeout):
                _, up = await self.loop.create_connection(lambda: TcpUpstream(self), b.host, b.port)
        except OSError as exc:  # TimeoutError included
            b.finish(None)
            b.connect_failures += 1
            detail, definite = connect_failure(exc)
            if definite:
                bal.mark_down_locally(b, f"connect: {detail}")
            else:
                bal.passive_failure(b, "connect failed")
            self._retry(b)
            return
        if self.closed:  # the client has gone while connecting
            b.finish(None)
            self.backend = None
            up.transport.close()  # type: ignore[union-attr]
            return
        b.consecutive_failures = 0
        self.up = up
        b.inflight.add(self)
        assert up.transport is not None
        if self.proxy_header:
            up.transport.write(self.proxy_header)  # before any byte of the client's
        if self.buffer_paused and self.transport is not None:
            # Before the write below, which may pause reading again (flow control).
            self.buffer_paused = False
            self.transport.resume_reading()
        if self.buffer:
            up.transport.write(b"".join(self.buffer))
            self.buffer = []
        if self.eof:
            up.transport.write_eof()

    def _retry(self, b: Backend) -> None:
        self.tried.append(b)
        if not self.closed:
            b.retries += 1
            self._connect()

    def data_received(self, data: bytes) -> None:
        self.deadline = self.loop.time() + self.bal.options.client_idle_timeout
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.write(data)
            if self.splice and len(data) >= SPLICE_THRESHOLD:
                self.to_splice()
        else:
            # Still connecting: keep what comes, up to a bound, then stop reading until
            # the backend connection is there (_open resumes).
            self.buffer.append(data)
            if (
                not self.buffer_paused
                and sum(len(x) for x in self.buffer) > 256 * 1024
                and self.transport is not None
            ):
                self.buffer_paused = True
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        up = self.up
        if up is not None and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()
        # Closed both ways: close (pending writes are flushed first); else stay half-open.
        return not self.up_eof

    # -- bulk data: splice -----------------------------------------------------

    def to_splice(self) -> None:
        """Stop uvloop moving bytes; splice both ways once its write buffers are empty."""
        up = self.up
        if self.splicing or self.closed or self.transport is None:
            return
        if up is None or up.transport is None:
            return  # the backend answered before _open adopted its connection: next read
        self.splicing = True
        self.splice = False
        self.transport.pause_reading()
        up.transport.pause_reading()
        self._start_splicer()

    def _start_splicer(self) -> None:
        up = self.up
        if self.closed or up is None or up.transport is None or self.transport is None:
            return
        if self.transport.get_write_buffer_size() or up.transport.get_write_buffer_size():
            self.loop.call_later(0.001, self._start_splicer)  # bounded by the idle timeout
            return
        client_sock = self.transport.get_extra_info("socket")
        backend_sock = up.transport.get_extra_info("socket")
        try:
            splicer = _splice.Splicer(
                self.loop,
                client_sock.fileno(),
                backend_sock.fileno(),
                touch=self._touch,
                on_close=self._splice_closed,
            )
        except OSError as exc:  # no descriptors or pipes left: uvloop goes on copying
            logger.warning("%s: splice unavailable (%s); copying", self.bal.settings.instance, exc)
            self.splicing = False
            self.transport.resume_reading()
            up.transport.resume_reading()
            return
        self.splicer = splicer
        if self.backend is not None:
            self.backend.spliced += 1
        splicer.start()

    def _touch(self) -> None:
        self.deadline = self.loop.time() + self.bal.options.client_idle_timeout

    def _splice_closed(self) -> None:
        self.splicer = None
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.splicer is not None:
            self.splicer.close()
        self.bal.timed.discard(self)
        if self.backend is not None:
            self.backend.inflight.discard(self)
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()
        if self.backend is not None and self.up is not None:
            self.backend.finish(2)
            self.backend = None

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None and not self.splicing:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None and not self.splicing:
            self.up.transport.resume_reading()

    def on_timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """Its backend was marked down or ejected: close both sides (`tcp_close_on_down`)."""
        if not self.bal.options.tcp_close_on_down:
            return
        if self.up is not None and self.up.transport is not None:
            self.up.transport.abort()  # a frozen backend would never take a graceful close
        if self.transport is not None:
            self.transport.close()


class TcpUpstream(asyncio.Protocol):
    def __init__(self, client: TcpClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        c = self.client
        c.deadline = c.loop.time() + c.bal.options.client_idle_timeout
        if c.transport is not None and not c.closed:
            c.transport.write(data)
            if c.splice and len(data) >= SPLICE_THRESHOLD:
                c.to_splice()

    def eof_received(self) -> bool:
        c = self.client
        c.up_eof = True
        t = c.transport
        if t is not None and not c.closed and t.can_write_eof():
            t.write_eof()
        return not c.eof  # both ways closed: this transport closes, and the client's with it

    def connection_lost(self, exc: Exception | None) -> None:
        c = self.client
        if c.splicer is not None:
            c.splicer.close()
        if c.transport is not None:
            c.transport.close()

    def pause_writing(self) -> None:
        if self.client.transport is not None and not self.client.splicing:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None and not self.client.splicing:
            self.client.transport.resume_reading()
