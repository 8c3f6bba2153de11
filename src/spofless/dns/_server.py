"""The DNS server: UDP and TCP listeners (asyncio protocols), health monitors, rate limit.

All decisions are in `_answer` (what to say) and `_ratelimit` (whether to say
it); this module moves bytes. A protocol callback never lets an exception out:
an unexpected one is logged and the datagram or frame is dropped, so no input
stops the server.

TCP (RFC 7766): two-byte length-prefixed messages, several per connection,
answered in order; a connection idle for `tcp_idle_timeout` is closed, one
that stops reading its answers is aborted, and beyond `max_tcp_connections`
new ones are closed at once. TCP is not rate limited: its handshake proves
the client's address, which is why limited UDP clients are sent there.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import cast

from spofless.dns._answer import Zone, answer_wire, select_members
from spofless.dns._cache import AnswerCache
from spofless.dns._ratelimit import ResponseRateLimiter, Verdict
from spofless.dns._settings import DnsSettings, IPAddress
from spofless.health import HealthMonitor, Status, Target, Transition

logger = logging.getLogger(__name__)

_MAX_TCP_BACKLOG = 1 << 20  # bytes of unread answers before a TCP client is dropped
_RRL_LOG_INTERVAL = 10.0  # seconds between two rate-limiting log lines
_UDP_BUFFER = 4 << 20  # ask the kernel for this much: bursts queue instead of being lost


class DnsServer:
    """One running DNS instance. `async with DnsServer(settings) as server:` serves."""

    def __init__(self, settings: DnsSettings, *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.zone = Zone(settings)
        self.cache = AnswerCache(self.zone)
        self.limiter = ResponseRateLimiter(settings.rate_limit)
        self.view: dict[str, Status] = {}
        self._answering: dict[str, tuple[str, ...]] = {}  # pool -> healthy members last logged
        self.port = settings.port
        self._clock = clock
        self._rrl_logged = -_RRL_LOG_INTERVAL
        self._monitors = [
            HealthMonitor(
                [Target(m.name, m.check_host, m.check_port) for m in pool.members],
                pool.health,
                self._on_change,
            )
            for pool in settings.pools.values()
        ]
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[_TcpProtocol] = set()

    @property
    def name(self) -> str:
        return self.settings.instance

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP and TCP on the same port, then start the health checks."""
        loop = asyncio.get_running_loop()
        host = self.settings.listen_host
        for attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, self.settings.port)
            )
            port = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await loop.create_server(
                    lambda: _TcpProtocol(self), host, port, reuse_address=True
                )
            except OSError as exc:
                udp.close()
                # With port 0 the TCP side of a free UDP port may be taken: try another.
                if exc.errno != errno.EADDRINUSE or self.settings.port != 0 or attempt == 19:
                    raise
                continue
            break
        self._udp = udp
        self.port = port
        sock = udp.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_BUFFER)
        for monitor in self._monitors:
            monitor.start()
        logger.info(
            "%s serving zone %s on %s:%d (udp, tcp), ttl %ds, %d name(s)",
            self.name,
            self.settings.zone,
            host,
            port,
            self.settings.ttl,
            len(self.settings.records),
        )

    async def stop(self) -> None:
        """Stop listening, close every connection, stop the health checks."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self._connections):
                conn.transport.abort()
            await self._tcp.wait_closed()
            self._tcp = None
        for monitor in self._monitors:
            await monitor.stop()
        logger.info("%s stopped", self.name)

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- health ------------------------------------------------------------------

    def _on_change(self, name: str, transition: Transition) -> None:
        self.view[name] = transition.new
        self.cache.clear()
        for pool in self.settings.pools.values():
            up = tuple(m.name for m in pool.members if self.view.get(m.name) is Status.UP)
            if self._answering.get(pool.component) == up:
                continue
            self._answering[pool.component] = up
            if up:
                logger.info(
                    "%s: %s answers with %d of %d: %s",
                    self.name,
                    pool.component,
                    len(up),
                    len(pool.members),
                    ", ".join(up),
                )
            else:
                logger.warning(
                    "%s: no instance of %s passes its health check: answering with all %d "
                    "(fail open)",
                    self.name,
                    pool.component,
                    len(pool.members),
                )

    def answers(self, owner: str, version: int = 4, region: str | None = None) -> list[str]:
        """The addresses `owner` (`www`, `@`) answers with now, for status pages and tests."""
        pool = self.settings.pools[self.settings.records[owner]]
        chosen, _ = select_members(pool.members, self.view, version, region)
        return [str(m.address) for m in chosen]

    # -- queries -----------------------------------------------------------------

    def handle_udp(self, data: bytes, addr: tuple[str | int, ...]) -> bytes | None:
        source = _source(addr)
        if source is None or addr[1] == 0:
            return None  # port 0 cannot be answered; a forged source at best
        now = self._clock()
        verdict, first = self.limiter.check(source, now)
        # One line per newly limited netblock, at most one per 10 s: a flood from forged
        # sources must not flood the log too.
        if first and now - self._rrl_logged >= _RRL_LOG_INTERVAL:
            self._rrl_logged = now
            logger.warning(
                "%s rate limiting %s: over %g responses/s (slip %d; %d dropped, %d slipped so far)",
                self.name,
                self.limiter.netblock(source),
                self.settings.rate_limit.responses_per_second,
                self.settings.rate_limit.slip,
                self.limiter.dropped,
                self.limiter.slipped,
            )
        if verdict is Verdict.DROP:
            return None
        if verdict is Verdict.SLIP:
            return answer_wire(data, source, self.view, self.zone, slip=True)
        return self.cache.answer(data, source, self.view)

    def handle_tcp(self, data: bytes, addr: tuple[str | int, ...]) -> bytes | None:
        return self.cache.answer(data, _source(addr), self.view, tcp=True)


def _source(addr: tuple[str | int, ...]) -> IPAddress | None:
    return _parse_address(str(addr[0]))


@functools.lru_cache(maxsize=4096)  # the same clients ask again and again
def _parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; they have the same methods.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            reply = self.server.handle_udp(data, addr)
            if reply is not None and self.transport is not None:
                self.transport.sendto(reply, addr)
        except Exception:
            logger.exception("%s: dropped a datagram from %s", self.server.name, addr[0])

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from clients that went away: nothing to do.
        logger.debug("%s: udp error %s", self.server.name, exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport
        self.peer: tuple[str | int, ...] = ("", 0)
        self._buffer = bytearray()
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername") or ("", 0)
        if len(self.server._connections) >= self.server.settings.max_tcp_connections:
            self.transport.abort()
            return
        self.server._connections.add(self)
        self._arm()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.server.settings.tcp_idle_timeout, self.transport.close)

    def data_received(self, data: bytes) -> None:
        try:
            self._buffer += data
            # A frame is at most 2 + 65535 bytes, so the buffer stays bounded.
            while len(self._buffer) >= 2:
                size = int.from_bytes(self._buffer[:2], "big")
                if len(self._buffer) < 2 + size:
                    break
                message = bytes(self._buffer[2 : 2 + size])
                del self._buffer[: 2 + size]
                reply = self.server.handle_tcp(message, self.peer)
                if reply is not None:
                    self.transport.write(len(reply).to_bytes(2, "big") + reply)
            if self.transport.get_write_buffer_size() > _MAX_TCP_BACKLOG:
                self.transport.abort()  # a client that does not read its answers
                return
            self._arm()
        except Exception:
            logger.exception("%s: closing a TCP connection from %s", self.server.name, self.peer)
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self.server._connections.discard(self)


async def serve(settings: DnsSettings, stop: asyncio.Event) -> None:
    """Run one DNS instance until `stop` is set."""
    async with DnsServer(settings):
        await stop.wait()
