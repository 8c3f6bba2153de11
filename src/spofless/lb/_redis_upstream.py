"""The redis mode's connections to Redis: commands written in order, replies matched.

A worker keeps one connection per backend (`Shards.shared`) for every client
connection, as twemproxy does: the commands that clients send in one turn of
the event loop go out in one write, and one read brings the replies of many
clients (fewer system calls for the proxy and for Redis). A client that sends
`WAIT` gets connections of its own from then on (`RedisClient._send_wait`), so
that a `WAIT` blocking in Redis holds up no other client.

Redis answers each connection in order, so the n-th reply is the n-th command
written; each reply goes to its command's client (into its `Read`'s place for
a command of a `Batch`), which sends replies in its own order. A command of a
batch that must go again becomes a `Command` of its own, in its place. When the
connection is lost, the commands not yet written are sent again, and the ones
written only when that is harmless (`_resp.is_retry_safe`): the others may have
run and get an error saying so.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

from spofless.health import connect_failure
from spofless.lb._resp import READS, is_retry_safe, parse_command, reply_ends

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
        self.after: Command | Batch | None = None  # WAIT: the keyed command(s) it follows
        self.why = ""  # why it was sent again (its error when it cannot be)


class Read:
    """The plain single-key commands of one client read (the hot path), in the client's
    order, sent in one `Batch` per connection; no object per command.

    `replies[i]` is the i-th command's reply once its batch has it, or the `Command`
    it became when it left its batch (refused by a fenced primary, or its connection
    lost): that one gets its reply as any other command does.
    """

    __slots__ = ("batches", "client", "left", "replies", "taken")

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.batches: dict[RedisUpstream, Batch] = {}
        self.replies: list[bytes | Command | None] = []
        self.left = 0  # batches not yet answered or broken up
        self.taken = 0  # commands that left their batch

    def reply(self) -> bytes | None:
        """All the replies, in order; None while one is missing."""
        replies = self.replies
        if not self.taken:
            return b"".join(replies)  # type: ignore[arg-type]  # all bytes
        out: list[bytes] = []
        for r in replies:
            if type(r) is Command:
                if r.reply is None:
                    return None
                out.append(r.reply)
            else:
                out.append(cast(bytes, r))
        return b"".join(out)


class Batch:
    """The commands of one `Read` that go on one connection: `parts[j]` is command j as
    it is written, `idx[j]` its place in the read."""

    __slots__ = ("deadline", "got", "idx", "n", "parts", "read", "shard", "up")

    def __init__(self, read: Read, up: RedisUpstream, shard: str, deadline: float) -> None:
        self.read = read
        self.up: RedisUpstream | None = up  # None once a command goes again elsewhere
        self.shard = shard
        self.deadline = deadline
        self.idx: list[int] = []
        self.parts: list[bytes] = []
        self.n = 0  # commands, once the read is parsed
        self.got = 0  # replies so far

    def take_out(self, j: int) -> Command:
        """Command j as a `Command` of its own, in its place among the read's replies."""
        raw = self.parts[j]
        parsed = parse_command(raw, 0)
        assert parsed is not None  # written whole by `encode_command`
        args = parsed[0]
        read = self.read
        cmd = Command(read.client, args[0].upper(), args, raw, self.shard, self.deadline)
        read.replies[self.idx[j]] = cmd
        read.taken += 1
        return cmd


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
        self.unsent: deque[Command | Batch] = deque()
        self.inflight: deque[Command | Batch] = deque()
        self.to_send = 0  # commands in `unsent`
        self.expected = 0  # replies expected: commands in `inflight` not yet answered
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
        self.to_send += 1
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def queue_batch(self, batch: Batch) -> None:
        """Write `batch` at the end of this turn of the loop, with the others queued."""
        batch.n = n = len(batch.idx)
        self.unsent.append(batch)
        self.out.extend(batch.parts)
        self.to_send += n
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
        self.expected += self.to_send
        self.to_send = 0

    def data_received(self, data: bytes) -> None:
        if self.buf:
            self.buf += data
            chunk = bytes(self.buf)
        else:
            chunk = data
        ends, errors = reply_ends(chunk, 0, self.expected)
        if not ends:
            if not self.buf:
                self.buf = bytearray(chunk)
            return
        pos = ends[-1]
        self.buf = bytearray(chunk[pos:]) if pos < len(chunk) else bytearray()
        n = len(ends)
        self.expected -= n
        inflight = self.inflight
        start = 0
        i = 0
        clients: dict[RedisClient, None] = {}
        while i < n:
            entry = inflight[0]
            if type(entry) is Batch:
                k = entry.got
                m = min(entry.n - k, n - i)
                read = entry.read
                replies = read.replies
                if errors:
                    for j in range(k, k + m):
                        reply = chunk[start : ends[i]]
                        start = ends[i]
                        i += 1
                        if reply[:1] == b"-" and reply.startswith(NOT_RUN):
                            entry.up = None  # a WAIT behind it would not count it
                            self._refused(entry.take_out(j), reply)
                        else:
                            replies[entry.idx[j]] = reply
                else:
                    for place, end in zip(entry.idx[k : k + m], ends[i : i + m], strict=True):
                        replies[place] = chunk[start:end]
                        start = end
                    i += m
                entry.got = k = k + m
                if k == entry.n:
                    inflight.popleft()
                    entry.parts = []  # not to be sent again: not kept (a WAIT keeps `entry`)
                    read.left -= 1
                    if not read.left:
                        clients[read.client] = None
                continue
            inflight.popleft()
            cmd: Command = entry  # type: ignore[assignment]  # (cast() is a call)
            end = ends[i]
            i += 1
            reply = chunk[start:end]
            start = end
            clients[cmd.client] = None
            if errors and reply[:1] == b"-" and reply.startswith(NOT_RUN):
                self._refused(cmd, reply)
            else:
                cmd.reply = reply
        for client in clients:
            client.flush()

    def _refused(self, cmd: Command, reply: bytes) -> None:
        """A fenced or demoted primary refused `cmd`: it did not run. Send it again once
        the shard has a new primary (the health check finds it)."""
        self.bal.passive_failure(self.backend, reply[1:40].decode("latin-1"))
        cmd.client.retry(cmd, reply[1:-2].decode("latin-1"))

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
        self.expected = self.to_send = 0
        clients: dict[RedisClient, None] = {}
        for entries, sent in ((inflight, True), (unsent, False)):
            for entry in entries:
                if type(entry) is Batch:
                    # Broken up: its commands go their own ways.
                    cmds = [entry.take_out(j) for j in range(entry.got, entry.n)]
                    entry.read.left -= 1
                else:
                    cmds = [cast(Command, entry)]
                for cmd in cmds:
                    clients[cmd.client] = None
                    if sent_ok or not sent or is_retry_safe(cmd.name, cmd.args):
                        if type(entry) is Batch:
                            entry.up = None  # a WAIT behind it would not count it
                        cmd.client.retry(cmd, why)
                    else:
                        cmd.reply = error_reply(
                            f"ERR spofless: {why}; the command may or may not have run"
                        )
        for client in clients:
            client.flush()
