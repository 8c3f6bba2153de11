"""The redis mode: RESP from clients, each command sent to the shard that holds its key.

Each route is one shard (a cache component); `ShardRing` maps a key to its shard,
and the shard's exclusive route (checked through its agents' `/primary`) names
its current primary. With `read_from: replica`, read commands go to the shard's
replica route (`/replica`), or to the primary when no replica is up.

Per client connection: commands are parsed in bulk as they come (pipelining: any
number in flight; `_resp.CommandReader`) and queued on the worker's one
connection to their backend, shared by all clients (`_redis_upstream`); replies
go back in the client's order. The hot path is a pipelined read of plain
single-key commands (GET, SET, INCR, HSET, ...): its commands go in one `Batch`
per connection, tracked by their place in the `Read` and with no object each,
and its replies go back together. A read of one command, and every other
command (multi-key, WAIT, answered here, or to a shard that cannot take it now),
is a `Command` of its own. A multi-key command whose keys are on different
shards gets `-CROSSSLOT`.

WAIT counts the replicas that have every write of the connection it runs on, so
it goes on the connection that took the client's last keyed command, right
behind it (so `SET k v` then `WAIT 1 100` asks k's primary about that SET). The
first one runs on the shared connection with its timeout cut to
`SHARED_WAIT_MAX_MS` (a WAIT blocks its connection in Redis); the client's later
commands are held until it answers (none may run before a command written ahead
of it), then go on connections of the client's own. A WAIT whose write went again
on another connection, or whose connection is gone, answers 0: whether a replica
has the write is not known.

Failover: a command refused by a fenced or demoted primary (`-READONLY`,
`-NOREPLICAS`: it did not run) is sent again once the shard has a primary, as is
every command not yet written; one whose connection is lost before its reply is
sent again only when that is harmless (`_resp.is_retry_safe`), else it gets an
error saying it may have run. A shard without a primary makes its commands wait
up to `response_timeout`, then fail with `-CLUSTERDOWN`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast
from zlib import crc32

from spofless.lb._redis_upstream import Batch, Command, Read, RedisUpstream, error_reply
from spofless.lb._resp import (
    LOCAL,
    READS,
    SINGLE_KEY,
    UNSUPPORTED,
    UPPER,
    CommandReader,
    ShardRing,
    command_keys,
    encode_command,
)

if TYPE_CHECKING:
    from spofless.lb._balancer import Balancer, Route

__all__ = ["RETRY_PAUSE", "RedisClient", "RedisUpstream", "Shards"]

logger = logging.getLogger(__name__)

RETRY_PAUSE = 0.05  # seconds between looks for a shard's new primary
# A client's first WAIT runs on the shared connection (the one its writes went on):
# its timeout is cut to this many milliseconds, for the other clients behind it.
SHARED_WAIT_MAX_MS = 250
_WAIT_ZERO = b":0\r\n"


class Shards:
    """The worker's shard map, built once from the routes (one per Balancer)."""

    def __init__(self, bal: Balancer) -> None:
        self.primary: dict[str, Route] = {}
        self.replica: dict[str, Route] = {}
        for route in bal.routes:
            spec = route.spec
            shard = spec.shard or spec.name
            (self.replica if spec.reads else self.primary)[shard] = route
        self.shared: dict[str, RedisUpstream] = {}  # by backend name, for every client
        self.ring = ShardRing(list(self.primary))
        # The shard a key lives on (`ring.table` first in the hot path).
        self.shard_of: Callable[[bytes], str] = self.ring.shard_of


def _shards(bal: Balancer) -> Shards:
    shards = getattr(bal, "redis_shards", None)
    if shards is None:
        shards = Shards(bal)
        bal.redis_shards = shards  # type: ignore[attr-defined]
    return cast(Shards, shards)


class RedisClient(asyncio.Protocol):
    """One client connection in redis mode."""

    def __init__(self, bal: Balancer) -> None:
        self.bal = bal
        self.shards = _shards(bal)
        self.loop = bal.loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = CommandReader()
        # In the client's order, replies pending: a Read (the plain single-key commands
        # of one read), or one Command.
        self.pending: deque[Command | Read] = deque()
        # Connections to the backends, by name: the worker's shared ones, or after
        # the client's first WAIT its own (see _redis_upstream).
        self.ups: dict[str, RedisUpstream] = self.shards.shared
        # The last keyed command (or the batch it went in): WAIT follows it.
        self.last_cmd: Command | Batch | None = None
        self.first_wait: Command | None = None  # while it runs, later commands are held
        self.held: list[Command] = []
        # Per shard, the commands waiting for it to take them (no primary, or sent again
        # after a failover), in the client's order; later ones to that shard queue behind.
        self.stalled: dict[str, deque[Command]] = {}
        self.closed = False
        self.closing = False  # QUIT: close once the replies before it are sent
        self.deadline = 0.0
        self.cmd_deadline = 0.0  # response_timeout after the chunk being parsed came

    # -- client side ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.bal.timed.add(self)
        self.deadline = self.loop.time() + self.bal.options.client_idle_timeout

    def on_timeout(self) -> None:
        if self.pending:  # waiting on a reply: not idle
            self.deadline = self.loop.time() + self.bal.options.client_idle_timeout
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.bal.timed.discard(self)
        if self.ups is not self.shards.shared:
            for up in list(self.ups.values()):
                up.close()
        self.pending.clear()
        self.held.clear()
        self.stalled.clear()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.deadline = now + self.bal.options.client_idle_timeout
        self.cmd_deadline = deadline = now + self.bal.options.response_timeout
        shards = self.shards
        shard_of = shards.shard_of
        table = shards.ring.table
        replicas = shards.replica
        stalled = self.stalled
        # The hot path: plain single-key commands go in the read's batches, one per
        # connection, with no object per command; others close the read so far and go
        # one by one (`_command`).
        read: Read | None = None
        writes: dict[str, Batch] = {}  # by shard: writes, and reads when no replicas
        reads: dict[str, Batch] = {}  # by shard, with `read_from: replica`
        count = 0
        last: Batch | None = None
        cmds = self.reader.feed(data)
        # One command (no pipelining) costs less on its own than in a batch.
        fast = len(cmds) > 1 and self.first_wait is None and not self.closing
        for args, raw in cmds:
            name = UPPER.get(args[0])
            if fast and name is not None and len(args) > 1:
                key = args[1]
                shard = None if 0x7B in key else table[crc32(key) >> 16]  # '{': a tag?
                if shard is None:
                    shard = shard_of(key)
                group = reads if replicas and name in READS else writes
                b = group.get(shard)
                if b is None and not (stalled and shard in stalled):
                    if read is None:
                        read = Read(self)
                    b = self._batch(read, shard, group is reads, deadline)
                    if b is not None:
                        group[shard] = b
                if b is not None:
                    b.idx.append(count)
                    b.parts.append(raw)
                    count += 1
                    last = b
                    continue
            if read is not None:
                self._close_read(read, count)
                read = None
                writes.clear()
                reads.clear()
                count = 0
            if last is not None:
                self.last_cmd = last
                last = None
            self._command(name or args[0].upper(), args, raw)
            if self.closing:
                break
            fast = self.first_wait is None
        if read is not None:
            self._close_read(read, count)
        if last is not None:
            self.last_cmd = last
        if self.reader.error is not None and not self.closing:
            self._answer_local(error_reply(f"ERR Protocol error: {self.reader.error}"))
            self.closing = True
        self.flush()

    def _batch(self, read: Read, shard: str, is_read: bool, deadline: float) -> Batch | None:
        """The batch of `read` on the connection that takes `shard`'s commands now (of
        its replicas for reads when `is_read`); None when the shard has none."""
        shards = self.shards
        route = shards.primary[shard]
        if is_read:
            replicas = shards.replica.get(shard)
            if replicas is not None and replicas.live:
                route = replicas
        b = self.bal.choose(route, None, None)
        if b is None:
            return None
        up = self.ups.get(b.name)
        if up is None or up.dead:
            own = self.ups is not self.shards.shared
            up = RedisUpstream(self.bal, b, self.ups, self if own else None)
        batch = read.batches.get(up)
        if batch is None:
            batch = read.batches[up] = Batch(read, up, shard, deadline)
        return batch

    def _close_read(self, read: Read, count: int) -> None:
        """The read's batches go on their connections, its replies in the client's order."""
        read.replies = [None] * count
        batches = read.batches
        read.left = len(batches)
        for up, batch in batches.items():
            up.queue_batch(batch)
        batches.clear()  # no cycle (each batch knows its read): freed without the GC
        self.pending.append(read)

    def _command(self, name: bytes, args: list[bytes], raw: bytes) -> None:
        """One command off the hot path: answered here, or routed on its own."""
        if name in SINGLE_KEY and len(args) > 1:
            cmd: Command | None = Command(
                self, name, args, raw, self.shards.shard_of(args[1]), self.cmd_deadline
            )
            self.last_cmd = cmd
        else:
            cmd = self._route_other(name, args, raw)
        if cmd is None:
            return
        self.pending.append(cmd)
        if self.first_wait is not None:
            self.held.append(cmd)
        elif cmd.name == b"WAIT":
            self._send_wait(cmd)
        else:
            self._send(cmd)

    def _route_other(self, name: bytes, args: list[bytes], raw: bytes) -> Command | None:
        """A command that is not a plain single-key one: answered here, refused, or
        routed by all its keys (which must be on one shard). None when answered."""
        if name in LOCAL:
            self._local(name, args)
            return None
        if name in UNSUPPORTED:
            self._answer_local(
                error_reply(f"ERR {name.decode()} is not supported through a sharding proxy")
            )
            return None
        if name == b"WAIT":
            last = self.last_cmd
            if last is None:
                self._answer_local(_WAIT_ZERO)  # nothing written on this connection yet
                return None
            cmd = Command(self, name, args, raw, last.shard, self.cmd_deadline)
            cmd.after = last
            return cmd
        keys = command_keys(name, args)
        if not keys:
            self._answer_local(
                error_reply(f"ERR {name.decode()} has no key: a sharding proxy cannot route it")
            )
            return None
        shard = self.shards.shard_of(keys[0])
        for key in keys[1:]:
            if self.shards.shard_of(key) != shard:
                self._answer_local(
                    error_reply(
                        f"CROSSSLOT Keys in request don't hash to the same shard "
                        f"({name.decode()}); put them under one hash tag, like {{user1}}.a"
                    )
                )
                return None
        cmd = Command(self, name, args, raw, shard, self.cmd_deadline)
        self.last_cmd = cmd
        return cmd

    def _local(self, name: bytes, args: list[bytes]) -> None:
        if name == b"PING":
            self._answer_local(b"+PONG\r\n" if len(args) == 1 else _bulk(args[1]))
        elif name == b"ECHO" and len(args) == 2:
            self._answer_local(_bulk(args[1]))
        elif name == b"SELECT":
            ok = len(args) == 2 and args[1] == b"0"
            self._answer_local(b"+OK\r\n" if ok else error_reply("ERR only database 0 is sharded"))
        elif name == b"HELLO":
            # RESP2 only: replies are passed on as the shards send them. A client asking
            # for RESP3 gets NOPROTO and falls back (redis-py, Jedis, go-redis do).
            if len(args) > 1 and args[1] != b"2":
                self._answer_local(error_reply("NOPROTO this proxy speaks RESP2 only"))
            else:
                self._answer_local(_HELLO)
        elif name == b"CLIENT":
            sub = args[1].upper() if len(args) > 1 else b""
            if sub in (b"SETNAME", b"SETINFO"):
                self._answer_local(b"+OK\r\n")  # per connection, kept by no shard
            else:
                self._answer_local(
                    error_reply("ERR CLIENT is not supported through a sharding proxy")
                )
        elif name == b"QUIT":
            self._answer_local(b"+OK\r\n")
            self.closing = True
        else:
            self._answer_local(error_reply(f"ERR wrong number of arguments for '{name.decode()}'"))

    def _answer_local(self, reply: bytes) -> None:
        cmd = Command(self, b"", [], b"", None, 0.0)
        cmd.reply = reply
        self.pending.append(cmd)

    def flush(self) -> None:
        """Send the replies that are ready, in order."""
        pending = self.pending
        out: list[bytes] = []
        while pending:
            entry = pending[0]
            if type(entry) is Read:
                if entry.left:
                    break
                reply = entry.reply()
                if reply is None:
                    break
                out.append(reply)
                entry.replies = []  # not kept by the batch a WAIT may follow
            else:
                cmd: Command = entry  # type: ignore[assignment]  # (cast() is a call)
                if cmd.reply is None:
                    break
                after = cmd.after
                if after is not None and after.up is not cmd.up:
                    # The write WAIT follows went again on another connection (refused by
                    # a fenced primary, or its connection lost): this WAIT did not count it.
                    out.append(_WAIT_ZERO)
                else:
                    out.append(cmd.reply)
            pending.popleft()
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))
        if self.first_wait is not None and self.first_wait.reply is not None:
            self._release()
        if self.closing and not pending and self.transport is not None:
            self.transport.close()

    # -- WAIT ------------------------------------------------------------------

    def _send_wait(self, cmd: Command) -> None:
        """WAIT goes on the connection that took the write before it, just after it
        (WAIT counts the replicas that have every write of its connection)."""
        up = cast(Command | Batch, cmd.after).up
        if up is None or up.dead:
            # The write waits for a primary, or the connection that took it is gone:
            # whether a replica has it is not known.
            cmd.reply = _WAIT_ZERO
            return
        if up.owner is None:
            # The first WAIT: on the shared connection, its timeout cut so that it holds
            # the other clients up briefly; this client's later commands wait for its
            # answer (so that none runs before a command written ahead of the WAIT),
            # then go on connections of its own.
            cmd.raw = _cut_wait(cmd.args)
            self.first_wait = cmd
            if self.ups is self.shards.shared:
                self.ups = {}
        up.queue(cmd)

    def _release(self) -> None:
        """The first WAIT is answered: send what came behind it, on the client's own
        connections."""
        self.first_wait = None
        held, self.held = self.held, []
        for cmd in held:
            if self.first_wait is not None:  # another WAIT on a shared connection
                self.held.append(cmd)
            elif cmd.reply is None:
                if cmd.name == b"WAIT":
                    self._send_wait(cmd)
                else:
                    self._send(cmd)

    # -- backend side ----------------------------------------------------------

    def _route(self, cmd: Command) -> Route:
        shards = self.shards
        assert cmd.shard is not None
        if cmd.read:
            replicas = shards.replica.get(cmd.shard)
            if replicas is not None and replicas.live:
                return replicas
        return shards.primary[cmd.shard]

    def _send(self, cmd: Command) -> RedisUpstream | None:
        """Queue `cmd` on an upstream of its shard, or wait for the shard to get one.
        Behind a command of this client that waits on the same shard, it waits too."""
        if cmd.shard in self.stalled:
            self._stall(cmd)
            return None
        up = self._queue(cmd)
        if up is None:
            self._stall(cmd)
        return up

    def _queue(self, cmd: Command) -> RedisUpstream | None:
        """Queue `cmd` on an upstream of its shard now; None when it has none."""
        b = self.bal.choose(self._route(cmd), None, None)
        if b is None:
            return None
        up = self.ups.get(b.name)
        if up is None or up.dead:
            own = self.ups is not self.shards.shared
            up = RedisUpstream(self.bal, b, self.ups, self if own else None)
        up.queue(cmd)
        return up

    def _stall(self, cmd: Command) -> None:
        """Hold `cmd` until its shard can take it, after this client's earlier commands
        to that shard: a write sent again after a failover must not be overtaken by the
        client's next one to the same key (SET k 1, SET k 2 must end with 2)."""
        shard = cast(str, cmd.shard)
        held = self.stalled.get(shard)
        if held is None:
            held = self.stalled[shard] = deque()
            self.loop.call_later(RETRY_PAUSE, self._drain, shard)
        held.append(cmd)

    def _drain(self, shard: str) -> None:
        """Send the held commands of `shard` in order, as far as it has an upstream;
        those past their deadline get an error; look again later for the rest."""
        held = self.stalled.get(shard)
        if held is None:
            return
        if self.closed:
            del self.stalled[shard]
            return
        now = self.loop.time()
        while held:
            cmd = held[0]
            if cmd.reply is None:
                if cmd.name == b"WAIT":
                    cmd.reply = _WAIT_ZERO  # its write went again: not counted
                elif now >= cmd.deadline:
                    cmd.reply = error_reply(
                        f"ERR spofless: {cmd.why}"
                        if cmd.why
                        else f"CLUSTERDOWN shard {shard} has no primary"
                    )
                elif self._queue(cmd) is None:
                    break
            held.popleft()
        if held:
            self.loop.call_later(RETRY_PAUSE, self._drain, shard)
        else:
            del self.stalled[shard]
        self.flush()

    def retry(self, cmd: Command, why: str) -> None:
        """Send `cmd` again (its upstream failed); the caller decided it is safe."""
        if cmd.name == b"WAIT":
            # Never sent again: on another connection it would not count the write.
            cmd.reply = _WAIT_ZERO
            return
        cmd.attempts += 1
        cmd.why = why
        if self.loop.time() >= cmd.deadline or self.closed:
            cmd.reply = error_reply(f"ERR spofless: {why}")
            self.flush()
            return
        self._stall(cmd)


_HELLO = (
    b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
    b"$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:0\r\n$4\r\nmode\r\n$5\r\nproxy\r\n"
    b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _cut_wait(args: list[bytes]) -> bytes:
    """WAIT with its timeout cut to SHARED_WAIT_MAX_MS (0, for ever, too)."""
    try:
        ms = int(args[2]) if len(args) == 3 else -1
    except ValueError:
        ms = -1
    if ms < 0:  # malformed: Redis answers with an error at once
        return encode_command(args)
    cut = SHARED_WAIT_MAX_MS if ms == 0 else min(ms, SHARED_WAIT_MAX_MS)
    return encode_command([args[0], args[1], b"%d" % cut])
