"""The redis mode: RESP from clients, each command sent to the shard that holds its key.

Each route is one shard (a cache component); `ShardRing` maps a key to its shard,
and the shard's exclusive route (checked through its agents' `/primary`) names
its current primary. With `read_from: replica`, read commands go to the shard's
replica route (`/replica`), or to the primary when no replica is up.

Per client connection: commands are parsed as they come (pipelining: any number
in flight), each is written to one upstream connection of this client (one per
backend), and replies go back in the client's order. A multi-key command whose
keys are on different shards gets `-CROSSSLOT`; WAIT goes to the shard of the
client's last keyed command (so `SET k v` then `WAIT 1 100` asks k's primary).

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

from spofless.health import connect_failure
from spofless.lb._resp import (
    ALL_KEYS,
    LOCAL,
    PAIRS,
    READS,
    TWO_KEYS,
    UNSUPPORTED,
    CommandReader,
    ShardRing,
    command_keys,
    is_retry_safe,
    reply_ends,
)

if TYPE_CHECKING:
    from spofless.lb._backend import Backend
    from spofless.lb._balancer import Balancer, Route

logger = logging.getLogger(__name__)

RETRY_PAUSE = 0.05
# Commands whose one key is their first argument, as clients spell them (the hot path).
_SINGLE_KEY = (
    READS.union(
        {
            b"SET",
            b"SETEX",
            b"PSETEX",
            b"SETNX",
            b"GETSET",
            b"GETDEL",
            b"GETEX",
            b"APPEND",
            b"INCR",
            b"DECR",
            b"INCRBY",
            b"DECRBY",
            b"INCRBYFLOAT",
            b"EXPIRE",
            b"PEXPIRE",
            b"EXPIREAT",
            b"PEXPIREAT",
            b"PERSIST",
            b"HSET",
            b"HSETNX",
            b"HMSET",
            b"HDEL",
            b"HINCRBY",
            b"LPUSH",
            b"RPUSH",
            b"LPOP",
            b"RPOP",
            b"LSET",
            b"LTRIM",
            b"LREM",
            b"SADD",
            b"SREM",
            b"SPOP",
            b"ZADD",
            b"ZREM",
            b"ZINCRBY",
            b"SETRANGE",
            b"SETBIT",
            b"PFADD",
        }
    )
    - ALL_KEYS
    - TWO_KEYS
    - PAIRS
)
_UPPER = {name.lower(): name for name in _SINGLE_KEY} | {
    name: name for name in _SINGLE_KEY
}  # seconds between looks for a shard's new primary
# Replies from a refusing primary: the command did not run, so sending it again is safe.
_NOT_RUN = (b"-READONLY", b"-NOREPLICAS", b"-LOADING", b"-MASTERDOWN")


class Shards:
    """The worker's shard map, built once from the routes (one per Balancer)."""

    def __init__(self, bal: Balancer) -> None:
        self.primary: dict[str, Route] = {}
        self.replica: dict[str, Route] = {}
        for route in bal.routes:
            spec = route.spec
            shard = spec.shard or spec.name
            (self.replica if spec.reads else self.primary)[shard] = route
        self.ring = ShardRing(list(self.primary))
        single = next(iter(self.primary)) if len(self.primary) == 1 else None
        # The shard a key lives on (bound once: called for every command).
        self.shard_of: Callable[[bytes], str] = (
            self.ring.shard_of if single is None else lambda key: single
        )


def _shards(bal: Balancer) -> Shards:
    shards = getattr(bal, "redis_shards", None)
    if shards is None:
        shards = Shards(bal)
        bal.redis_shards = shards  # type: ignore[attr-defined]
    return cast(Shards, shards)


class Command:
    __slots__ = ("args", "attempts", "deadline", "name", "raw", "read", "reply", "shard")

    def __init__(
        self, name: bytes, args: list[bytes], raw: bytes, shard: str | None, deadline: float
    ) -> None:
        self.name = name
        self.args = args
        self.raw = raw
        self.shard = shard
        self.read = name in READS
        self.reply: bytes | None = None
        self.attempts = 0
        self.deadline = deadline


def _error(text: str) -> bytes:
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


class RedisClient(asyncio.Protocol):
    """One client connection in redis mode."""

    def __init__(self, bal: Balancer) -> None:
        self.bal = bal
        self.shards = _shards(bal)
        self.loop = bal.loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = CommandReader()
        self.pending: deque[Command] = deque()  # in the client's order, replies pending
        self.ups: dict[str, RedisUpstream] = {}  # by backend name
        self.last_shard: str | None = None
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
        for up in list(self.ups.values()):
            up.close()
        self.ups.clear()
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.deadline = now + self.bal.options.client_idle_timeout
        self.cmd_deadline = now + self.bal.options.response_timeout
        reader = self.reader
        pending = self.pending
        shard_of = self.shards.shard_of
        deadline = self.cmd_deadline
        # One backend choice per shard for the whole read (its commands share it).
        batch: dict[tuple[str, bool], RedisUpstream] = {}
        for args, raw in reader.feed(data):
            if self.closing:
                break
            name = _UPPER.get(args[0]) or args[0].upper()
            if name in _SINGLE_KEY and len(args) >= 2:
                # The common case (GET, SET, INCR, HSET, ...): one key, the first argument.
                shard = shard_of(args[1])
                self.last_shard = shard
                cmd = Command(name, args, raw, shard, deadline)
                pending.append(cmd)
                up = batch.get((shard, cmd.read))
                if up is not None and not up.dead:
                    up.unsent.append(cmd)
                    up.out.append(raw)
                    continue
                up = self._send(cmd)
                if up is not None:
                    batch[(shard, cmd.read)] = up
            else:
                self._command(name, args, raw, batch)
        if reader.error is not None and not self.closing:
            self._answer_local(_error(f"ERR Protocol error: {reader.error}"))
            self.closing = True
        for up in batch.values():
            up.flush()
        self.flush()

    def _command(
        self,
        name: bytes,
        args: list[bytes],
        raw: bytes,
        batch: dict[tuple[str, bool], RedisUpstream],
    ) -> None:
        cmd = self._route_other(name, args, raw)
        if cmd is None:
            return
        shard = cast(str, cmd.shard)
        self.pending.append(cmd)
        up = batch.get((shard, cmd.read))
        if up is not None and not up.dead:
            up.queue(cmd)
            return
        up = self._send(cmd)
        if up is not None:
            batch[(shard, cmd.read)] = up

    def _route_other(self, name: bytes, args: list[bytes], raw: bytes) -> Command | None:
        """A command that is not a plain single-key one: answered here, refused, or
        routed by all its keys (which must be on one shard). None when answered."""
        if name in LOCAL:
            self._local(name, args)
            return None
        if name in UNSUPPORTED:
            self._answer_local(
                _error(f"ERR {name.decode()} is not supported through a sharding proxy")
            )
            return None
        if name == b"WAIT":
            if self.last_shard is None:
                self._answer_local(b":0\r\n")  # nothing written on this connection yet
                return None
            return Command(name, args, raw, self.last_shard, self.cmd_deadline)
        keys = command_keys(name, args)
        if not keys:
            self._answer_local(
                _error(f"ERR {name.decode()} has no key: a sharding proxy cannot route it")
            )
            return None
        shard = self.shards.shard_of(keys[0])
        for key in keys[1:]:
            if self.shards.shard_of(key) != shard:
                self._answer_local(
                    _error(
                        f"CROSSSLOT Keys in request don't hash to the same shard "
                        f"({name.decode()}); put them under one hash tag, like {{user1}}.a"
                    )
                )
                return None
        self.last_shard = shard
        return Command(name, args, raw, shard, self.cmd_deadline)

    def _local(self, name: bytes, args: list[bytes]) -> None:
        if name == b"PING":
            self._answer_local(b"+PONG\r\n" if len(args) == 1 else _bulk(args[1]))
        elif name == b"ECHO" and len(args) == 2:
            self._answer_local(_bulk(args[1]))
        elif name == b"SELECT":
            ok = len(args) == 2 and args[1] == b"0"
            self._answer_local(b"+OK\r\n" if ok else _error("ERR only database 0 is sharded"))
        elif name == b"HELLO":
            # RESP2 only: replies are passed on as the shards send them. A client asking
            # for RESP3 gets NOPROTO and falls back (redis-py, Jedis, go-redis do).
            if len(args) > 1 and args[1] != b"2":
                self._answer_local(_error("NOPROTO this proxy speaks RESP2 only"))
            else:
                self._answer_local(_HELLO)
        elif name == b"CLIENT":
            sub = args[1].upper() if len(args) > 1 else b""
            if sub in (b"SETNAME", b"SETINFO"):
                self._answer_local(b"+OK\r\n")  # per connection, kept by no shard
            else:
                self._answer_local(_error("ERR CLIENT is not supported through a sharding proxy"))
        elif name == b"QUIT":
            self._answer_local(b"+OK\r\n")
            self.closing = True
        else:
            self._answer_local(_error(f"ERR wrong number of arguments for '{name.decode()}'"))

    def _answer_local(self, reply: bytes) -> None:
        cmd = Command(b"", [], b"", None, 0.0)
        cmd.reply = reply
        self.pending.append(cmd)

    def flush(self) -> None:
        """Send the replies that are ready, in order."""
        pending = self.pending
        out: list[bytes] = []
        while pending and pending[0].reply is not None:
            out.append(cast(bytes, pending.popleft().reply))
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))
        if self.closing and not pending and self.transport is not None:
            self.transport.close()

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
        """Queue `cmd` on an upstream of its shard, or wait for the shard to get one."""
        route = self._route(cmd)
        b = self.bal.choose(route, None, None)
        if b is None:
            self._wait(cmd)
            return None
        up = self.ups.get(b.name)
        if up is None or up.dead:
            up = RedisUpstream(self, b)
            self.ups[b.name] = up
        up.queue(cmd)
        return up

    def _wait(self, cmd: Command) -> None:
        if self.loop.time() >= cmd.deadline:
            cmd.reply = _error(f"CLUSTERDOWN shard {cmd.shard} has no primary")
            self.flush()
            return
        self.loop.call_later(RETRY_PAUSE, self._resend, cmd)

    def _resend(self, cmd: Command) -> None:
        if self.closed or cmd.reply is not None:
            return
        up = self._send(cmd)
        if up is not None:
            up.flush()

    def retry(self, cmd: Command, why: str) -> None:
        """Send `cmd` again (its upstream failed); the caller decided it is safe."""
        cmd.attempts += 1
        if self.loop.time() >= cmd.deadline or self.closed:
            cmd.reply = _error(f"ERR spofless: {why}")
            self.flush()
            return
        self.loop.call_later(RETRY_PAUSE, self._resend, cmd)


_HELLO = (
    b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
    b"$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:0\r\n$4\r\nmode\r\n$5\r\nproxy\r\n"
    b"$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


class RedisUpstream(asyncio.Protocol):
    """One client's connection to one Redis backend: commands written in order, replies
    matched to them in order (Redis answers each connection in order)."""

    def __init__(self, client: RedisClient, b: Backend) -> None:
        self.client = client
        self.backend = b
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []  # written once the connection is open / at flush
        self.unsent: deque[Command] = deque()
        self.inflight: deque[Command] = deque()
        self.buf = bytearray()
        self.dead = False
        b.begin()
        client.loop.create_task(self._open())

    async def _open(self) -> None:
        b = self.backend
        bal = self.client.bal
        try:
            async with asyncio.timeout(bal.options.connect_timeout):
                await self.client.loop.create_connection(lambda: self, b.host, b.port)
        except OSError as exc:
            b.connect_failures += 1
            detail, definite = connect_failure(exc)
            if definite:
                bal.mark_down_locally(b, f"connect: {detail}")
            else:
                bal.passive_failure(b, "connect failed")
            self._fail("cannot connect", sent_ok=True)
            return
        if self.client.closed:
            self.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.backend.inflight.add(self)
        self.backend.consecutive_failures = 0
        self.flush()

    def queue(self, cmd: Command) -> None:
        self.unsent.append(cmd)
        self.out.append(cmd.raw)

    def flush(self) -> None:
        if self.transport is None or not self.out:
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
        client = self.client
        ends, errors = reply_ends(chunk, 0, len(inflight))
        pos = ends[-1] if ends else 0
        refused = errors and any(chunk.startswith(_NOT_RUN, start) for start in [0, *ends[:-1]])
        self.buf = bytearray(chunk[pos:]) if pos < len(chunk) else bytearray()
        n = len(ends)
        if not n:
            return
        pending = client.pending
        if (
            not refused
            and len(pending) >= n
            and pending[0] is inflight[0]
            and all(pending[i] is inflight[i] for i in range(1, n))
        ):
            # The common case: these replies are the next the client waits for, in
            # order: pass them on in one write, without cutting them apart.
            for _ in range(n):
                inflight.popleft()
                pending.popleft()
            if client.transport is not None and not client.closed:
                client.transport.write(chunk if pos == len(chunk) else chunk[:pos])
            if pending and pending[0].reply is not None:
                client.flush()
            return
        start = 0
        if not refused:
            for end in ends:
                inflight.popleft().reply = chunk[start:end]
                start = end
            client.flush()
            return
        for end in ends:
            cmd = inflight.popleft()
            reply = chunk[start:end]
            start = end
            if reply[:1] == b"-" and reply.startswith(_NOT_RUN):
                # A fenced or demoted primary refused it: it did not run. Send it again
                # once the shard has a new primary (the health check finds it).
                client.bal.passive_failure(self.backend, reply[1:40].decode("latin-1"))
                client.retry(cmd, reply[1:-2].decode("latin-1"))
                continue
            cmd.reply = reply
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
        client = self.client
        if client.ups.get(self.backend.name) is self:
            del client.ups[self.backend.name]
        inflight, unsent = list(self.inflight), list(self.unsent)
        self.inflight.clear()
        self.unsent.clear()
        for cmd in inflight:
            if sent_ok or is_retry_safe(cmd.name, cmd.args):
                client.retry(cmd, why)
            else:
                cmd.reply = _error(f"ERR spofless: {why}; the command may or may not have run")
        for cmd in unsent:
            client.retry(cmd, why)
        client.flush()
