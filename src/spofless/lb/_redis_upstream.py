"""The redis mode's connections to Redis: commands written in order, replies matched.

A worker keeps one connection per backend (`Shards.shared`) for every client
connection, as twemproxy does: the commands that clients send in one turn of
the event loop go out in one write, and one read brings the replies of many
clients (fewer system calls for the proxy and for Redis). A client that sends
`WAIT` gets connections of its own from then on (`RedisClient._wait_for`), so
that a `WAIT` blocking in Redis holds up no other client.

Redis answers each connection in order, so the n-th reply is the n-th command
written; each reply goes to its command's client, which sends replies in its
own order. When the connection is lost, the commands not yet written are sent
again, and the ones written only when that is harmless (`_resp.is_retry_safe`):
the others may have run and get an error saying so.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

from spofless.health import connect_failure
from spofless.lb._resp import READS, is_retry_safe, reply_ends

if TYPE_CHECKING:
    from spofless.lb._backend import Backend
    from spofless.lb._balancer import Balancer
    from spofless.lb._redis import RedisClient

# Replies from a refusing primary: the command did not run, so sending it again is safe.
NOT_RUN = (b"-READONLY", b"-NOREPLICAS", b"-LOADING", b"-MASTERDOWN")


class Command:
    """One client command on its way: where it goes and, once known, its reply."""

    __slots__ = (
        "after",
        "args",
        "attempts",
        "client",
        "deadline",
        "name",
        "raw",
        "read",
        "reply",
        "shard",
        "up",
        "why",
    )

    def __init__(
        self,
        client: RedisClient,
        name: bytes,
        args: list[bytes],
        raw: bytes,
        shard: str | None,
        deadline: float,
    ) -> None:
        self.client = client
        self.name = name
        self.args = args
        self.raw = raw
        self.shard = shard
        self.read = name in READS
        self.reply: bytes | None = None
        self.attempts = 0
        self.deadline = deadline
        self.up: RedisUpstream | None = None  # the connection it was last queued on
        self.after: Command | None = None  # WAIT: the keyed command it follows
        self.why = ""  # why it was sent again (its error when it cannot be)


def error_reply(text: str) -> bytes:
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


class RedisUpstream(asyncio.Protocol):
    """One connection to one Redis backend, in `pool` (by backend name) while it lives.

    `owner` is the client whose own connection it is, or None for a shared one.
    """

    def __init__(
        self,
        bal: Balancer,
        b: Backend,
        pool: dict[str, RedisUpstream],
        owner: RedisClient | None,
    ) -> None:
        self.bal = bal
        self.loop = cast(asyncio.AbstractEventLoop, bal.loop)
        self.backend = b
        self.pool = pool
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []  # written at the end of this turn of the loop
        self.unsent: deque[Command] = deque()
        self.inflight: deque[Command] = deque()
        self.buf = bytearray()
        self.dead = False
        self.scheduled = False
        pool[b.name] = self
        b.begin()
        self.loop.create_task(self._open())

    async def _open(self) -> None:
        b = self.backend
        bal = self.bal
        try:
            async with asyncio.timeout(bal.options.connect_timeout):
                await self.loop.create_connection(lambda: self, b.host, b.port)
        except OSError as exc:
            b.connect_failures += 1
            detail, definite = connect_failure(exc)
            if definite:
                bal.mark_down_locally(b, f"connect: {detail}")
            else:
                bal.passive_failure(b, "connect failed")
            self._fail("cannot connect", sent_ok=True)
            return
        if self.owner is not None and self.owner.closed:
            self.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.backend.inflight.add(self)
        self.backend.consecutive_failures = 0
        self.flush()

    def queue(self, cmd: Command) -> None:
        """Write `cmd` at the end of this turn of the loop, with the others queued."""
        cmd.up = self
        self.unsent.append(cmd)
        self.out.append(cmd.raw)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.transport is None or not self.out or self.dead:
            return
        self.transport.write(b"".join(self.out))
        self.out = []
        self.inflight.extend(self.unsent)
        self.unsent.clear()

    def data_received(self, data: bytes) -> None:
        if self.buf:
            self.buf += data
            chunk = bytes(self.buf)
        else:
            chunk = data
        inflight = self.inflight
        ends, errors = reply_ends(chunk, 0, len(inflight))
        if not ends:
            if not self.buf:
                self.buf = bytearray(chunk)
            return
        pos = ends[-1]
        self.buf = bytearray(chunk[pos:]) if pos < len(chunk) else bytearray()
        owner = self.owner
        if owner is not None and not errors:
            # One client: its replies, in its order (the common case of a pipeline to
            # one shard: passed on whole when they are the next it waits for).
            pending = owner.pending
            n = len(ends)
            if (
                pending
                and pending[0] is inflight[0]
                and len(pending) >= n
                and all(pending[i] is inflight[i] for i in range(1, n))
            ):
                for _ in range(n):
                    inflight.popleft()
                    pending.popleft()
                owner.write(chunk[:pos] if pos < len(chunk) else chunk)
                if pending and pending[0].reply is not None:
                    owner.flush()
                return
        start = 0
        clients: dict[RedisClient, None] = {}
        for end in ends:
            cmd = inflight.popleft()
            reply = chunk[start:end]
            start = end
            client = cmd.client
            clients[client] = None
            if errors and reply[:1] == b"-" and reply.startswith(NOT_RUN):
                # A fenced or demoted primary refused it: it did not run. Send it again
                # once the shard has a new primary (the health check finds it).
                self.bal.passive_failure(self.backend, reply[1:40].decode("latin-1"))
                client.retry(cmd, reply[1:-2].decode("latin-1"))
                continue
            cmd.reply = reply
        for client in clients:
            client.flush()

    def abandon(self) -> None:
        """The backend left rotation (down, ejected): retry elsewhere what can be."""
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost does the rest
        else:
            self._fail("closed", sent_ok=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("connection to the shard's primary lost", sent_ok=False)

    def _fail(self, why: str, *, sent_ok: bool) -> None:
        """The connection is gone: unsent commands go again; sent ones only when safe."""
        if self.dead:
            return
        self.dead = True
        self.backend.inflight.discard(self)
        self.backend.finish(None)
        if self.pool.get(self.backend.name) is self:
            del self.pool[self.backend.name]
        inflight, unsent = list(self.inflight), list(self.unsent)
        self.inflight.clear()
        self.unsent.clear()
        self.out = []
        clients: dict[RedisClient, None] = {}
        for cmd in inflight:
            clients[cmd.client] = None
            if sent_ok or is_retry_safe(cmd.name, cmd.args):
                cmd.client.retry(cmd, why)
            else:
                cmd.reply = error_reply(f"ERR spofless: {why}; the command may or may not have run")
        for cmd in unsent:
            clients[cmd.client] = None
            cmd.client.retry(cmd, why)
        for client in clients:
            client.flush()
