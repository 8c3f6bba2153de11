"""The redis mode's protocol objects fed bytes through fake transports (no sockets)."""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_left
from collections.abc import Iterator
from zlib import crc32

import hiredis
import pytest

from spofless.lb import _redis
from spofless.lb._balancer import Balancer
from spofless.lb._resp import ShardRing, hash_slot_key
from spofless.lb._settings import LbSettings
from tests.unit.lb_fakes import FakeTransport


def settings() -> LbSettings:
    route = {"fail_open": True, "exclusive": True}
    return LbSettings.model_validate(
        {
            "instance": "lb/0",
            "mode": "redis",
            "routes": [
                {"name": s, "shard": s, **route,
                 "backends": [{"name": f"{s}/0", "host": "127.0.0.1", "port": 1 + i}]}
                for i, s in enumerate(("a", "b"))
            ],
        }
    )  # fmt: skip


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    async def opened(self: _redis.RedisUpstream) -> None:
        self.connection_made(FakeTransport())  # type: ignore[arg-type]

    monkeypatch.setattr(_redis.RedisUpstream, "_open", opened)
    yield


def key_on(shard: str, prefix: str) -> bytes:
    ring = ShardRing(["a", "b"])
    return next(k for i in range(1000) if ring.shard_of(k := f"{prefix}{i}".encode()) == shard)


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def client() -> tuple[_redis.RedisClient, FakeTransport]:
    bal = Balancer(settings())
    bal.start(asyncio.get_running_loop())
    c = _redis.RedisClient(bal)
    t = FakeTransport()
    c.connection_made(t)  # type: ignore[arg-type]
    return c, t


def upstream(c: _redis.RedisClient, shard: str) -> tuple[_redis.RedisUpstream, FakeTransport]:
    up = c.ups[f"{shard}/0"]
    assert isinstance(up.transport, FakeTransport)
    return up, up.transport


async def test_pipelined_replies_come_back_in_the_clients_order(no_connect: None) -> None:
    c, t = await client()
    a1, b1, a2 = key_on("a", "x"), key_on("b", "y"), key_on("a", "z")
    c.data_received(cmd(b"GET", a1) + cmd(b"GET", b1) + cmd(b"GET", a2) + cmd(b"PING"))
    await asyncio.sleep(0)  # the upstreams "connect"
    up_a, ta = upstream(c, "a")
    up_b, tb = upstream(c, "b")
    assert bytes(ta.out) == cmd(b"GET", a1) + cmd(b"GET", a2)
    assert bytes(tb.out) == cmd(b"GET", b1)
    up_b.data_received(b"$2\r\nB1\r\n")
    assert bytes(t.out) == b""  # a1's reply comes first
    up_a.data_received(b"$2\r\nA1\r\n$2\r")
    assert bytes(t.out) == b""  # the replies of one read go back together
    up_a.data_received(b"\nA2\r\n")
    assert bytes(t.out) == b"$2\r\nA1\r\n$2\r\nB1\r\n$2\r\nA2\r\n+PONG\r\n"
    # Replies in the client's order across reads too: the later read's reply waits.
    c.data_received(cmd(b"GET", a1))
    c.data_received(cmd(b"GET", b1))
    await asyncio.sleep(0)
    up_b.data_received(b"$2\r\nB2\r\n")
    assert bytes(t.out).endswith(b"+PONG\r\n")
    up_a.data_received(b"$2\r\nA3\r\n")
    assert bytes(t.out).endswith(b"+PONG\r\n$2\r\nA3\r\n$2\r\nB2\r\n")
    c.connection_lost(None)


async def test_keys_on_two_shards_are_refused_and_tagged_keys_pass(no_connect: None) -> None:
    c, t = await client()
    c.data_received(cmd(b"MGET", key_on("a", "x"), key_on("b", "y")))
    assert bytes(t.out).startswith(b"-CROSSSLOT ")
    c.data_received(cmd(b"MGET", b"{u}.1", b"{u}.2") + cmd(b"MULTI"))
    await asyncio.sleep(0)
    (up,) = c.ups.values()
    assert isinstance(up.transport, FakeTransport)
    assert bytes(up.transport.out) == cmd(b"MGET", b"{u}.1", b"{u}.2")
    c.connection_lost(None)


async def test_a_refused_write_is_sent_again_and_a_lost_one_only_when_harmless(
    no_connect: None,
) -> None:
    c, t = await client()
    k = key_on("a", "x")
    c.data_received(cmd(b"SET", k, b"1"))
    await asyncio.sleep(0)
    up, tu = upstream(c, "a")
    # A fenced primary refuses: the write did not run; it goes again.
    up.data_received(b"-NOREPLICAS Not enough good replicas to write.\r\n")
    assert bytes(t.out) == b""
    await asyncio.sleep(_redis.RETRY_PAUSE * 2)
    assert bytes(tu.out) == cmd(b"SET", k, b"1") * 2
    up.data_received(b"+OK\r\n")
    assert bytes(t.out) == b"+OK\r\n"
    # The connection breaks with an INCR and a GET in flight: the GET is sent again,
    # the INCR (which may have run) is answered with an error saying so.
    c.data_received(cmd(b"INCR", k) + cmd(b"GET", k))
    await asyncio.sleep(0)  # written at the end of the loop's turn
    up.connection_lost(ConnectionResetError())
    await asyncio.sleep(_redis.RETRY_PAUSE * 2)
    up2, tu2 = upstream(c, "a")
    assert up2 is not up and bytes(tu2.out) == cmd(b"GET", k)
    up2.data_received(b"$1\r\n1\r\n")
    assert bytes(t.out).endswith(b"may or may not have run\r\n$1\r\n1\r\n")
    c.connection_lost(None)


async def test_a_write_sent_again_is_not_overtaken_by_the_clients_next_one(
    no_connect: None,
) -> None:
    c, t = await client()
    k, other = key_on("a", "x"), key_on("b", "y")
    c.data_received(cmd(b"SET", k, b"1"))
    await asyncio.sleep(0)
    up, tu = upstream(c, "a")
    up.data_received(b"-READONLY You can't write against a read only replica.\r\n")
    # While SET k 1 waits to go again, the client sends SET k 2, and a GET on shard b.
    c.data_received(cmd(b"SET", k, b"2") + cmd(b"GET", other))
    await asyncio.sleep(0)
    assert bytes(tu.out) == cmd(b"SET", k, b"1")  # SET k 2 held behind SET k 1
    up_b, tb = upstream(c, "b")
    assert bytes(tb.out) == cmd(b"GET", other)  # the other shard is not held
    await asyncio.sleep(_redis.RETRY_PAUSE * 2)
    assert bytes(tu.out) == cmd(b"SET", k, b"1") * 2 + cmd(b"SET", k, b"2")
    up.data_received(b"+OK\r\n+OK\r\n")
    up_b.data_received(b"$-1\r\n")
    assert bytes(t.out) == b"+OK\r\n+OK\r\n$-1\r\n"
    assert c.stalled == {}
    c.connection_lost(None)


async def test_clients_share_one_connection_per_backend(no_connect: None) -> None:
    c1, t1 = await client()
    c2 = _redis.RedisClient(c1.bal)
    t2 = FakeTransport()
    c2.connection_made(t2)  # type: ignore[arg-type]
    k1, k2 = key_on("a", "x"), key_on("a", "y")
    c1.data_received(cmd(b"GET", k1))
    c2.data_received(cmd(b"GET", k2) + cmd(b"PING"))
    await asyncio.sleep(0)  # one write for both clients, at the end of the loop's turn
    assert c1.ups is c2.ups and list(c1.ups) == ["a/0"]
    up, tu = upstream(c1, "a")
    assert bytes(tu.out) == cmd(b"GET", k1) + cmd(b"GET", k2)
    up.data_received(b"$2\r\nv1\r\n$2\r\nv2\r\n")
    assert bytes(t1.out) == b"$2\r\nv1\r\n"
    assert bytes(t2.out) == b"$2\r\nv2\r\n+PONG\r\n"
    # A client that leaves does not close the shared connection; a reply for it is dropped.
    c1.data_received(cmd(b"GET", k1))
    await asyncio.sleep(0)
    c1.connection_lost(None)
    assert not tu.closed
    up.data_received(b"$2\r\nv1\r\n")
    c2.data_received(cmd(b"GET", k2))
    await asyncio.sleep(0)
    up.data_received(b"$2\r\nv3\r\n")
    assert bytes(t2.out).endswith(b"+PONG\r\n$2\r\nv3\r\n")
    c2.connection_lost(None)


async def test_wait_follows_the_write_on_its_connection(no_connect: None) -> None:
    c, t = await client()
    k = key_on("a", "x")
    c.data_received(cmd(b"SET", k, b"1") + cmd(b"WAIT", b"1", b"1000") + cmd(b"GET", k))
    await asyncio.sleep(0)
    shared = c.shards.shared["a/0"]
    ts = shared.transport
    assert isinstance(ts, FakeTransport)
    # The first WAIT goes on the shared connection, behind the write, its timeout cut so
    # that it holds the other clients up briefly; the GET waits for its answer.
    assert bytes(ts.out) == cmd(b"SET", k, b"1") + cmd(b"WAIT", b"1", b"250")
    shared.data_received(b"+OK\r\n:1\r\n")
    assert bytes(t.out) == b"+OK\r\n:1\r\n"
    await asyncio.sleep(0)
    # From then on the client has connections of its own, and WAIT goes there uncut.
    own, to = upstream(c, "a")
    assert own is not shared and own.owner is c and bytes(to.out) == cmd(b"GET", k)
    own.data_received(b"$1\r\n1\r\n")
    c.data_received(cmd(b"SET", k, b"2") + cmd(b"WAIT", b"1", b"1000"))
    await asyncio.sleep(0)
    assert bytes(to.out).endswith(cmd(b"SET", k, b"2") + cmd(b"WAIT", b"1", b"1000"))
    own.data_received(b"+OK\r\n:1\r\n")
    assert bytes(t.out) == b"+OK\r\n:1\r\n$1\r\n1\r\n+OK\r\n:1\r\n"
    # The connection that took the write is lost: WAIT cannot count it and answers 0
    # (another connection's WAIT would count that connection's writes).
    own.connection_lost(ConnectionResetError())
    c.data_received(cmd(b"WAIT", b"1", b"1000"))
    assert bytes(t.out).endswith(b"+OK\r\n:1\r\n:0\r\n")
    c.connection_lost(None)
    assert not ts.closed


def test_the_ring_table_agrees_with_the_ring_search() -> None:
    ring = ShardRing(["a", "b", "c"])
    assert 0.99 < sum(s is not None for s in ring.table) / len(ring.table) < 1  # few searched

    def searched(key: bytes) -> str:
        h = crc32(hash_slot_key(key))
        i = bisect_left(ring._hashes, h)
        return ring._names[i % len(ring._names)]

    # Keys whose hash falls in each slice that holds a point, and around the ring's ends.
    keys = [f"key:{i}".encode() for i in range(20000)] + [b"{tag}.x", b"{}.x", b"a{b}c"]
    for key in keys:
        assert ring.shard_of(key) == searched(key), key
    for h in [*ring._hashes, 0, 2**32 - 1]:
        for d in (-1, 0, 1):
            x = min(max(h + d, 0), 2**32 - 1)
            shard = ring.table[x >> 16]
            assert shard is None or shard == ring._names[bisect_left(ring._hashes, x) % 480]
    assert ShardRing(["only"]).table == ["only"] * 65536


async def test_commands_held_behind_a_first_wait_go_when_its_connection_is_lost(
    no_connect: None,
) -> None:
    c, t = await client()
    k = key_on("a", "x")
    c.data_received(cmd(b"INCR", k) + cmd(b"WAIT", b"1", b"0") + cmd(b"GET", k))
    await asyncio.sleep(0)
    shared = c.shards.shared["a/0"]
    assert isinstance(shared.transport, FakeTransport)
    assert bytes(shared.transport.out).endswith(cmd(b"WAIT", b"1", b"250"))  # 0: for ever
    shared.connection_lost(ConnectionResetError())
    # The INCR may have run, and the WAIT: said so (neither is sent again); the GET goes on.
    assert bytes(t.out).count(b"may or may not have run") == 2
    await asyncio.sleep(0)
    own, to = upstream(c, "a")
    assert own.owner is c and bytes(to.out) == cmd(b"GET", k)
    own.data_received(b"$-1\r\n")
    assert bytes(t.out).endswith(b"$-1\r\n")
    c.connection_lost(None)
    assert to.closed


async def test_a_batch_is_broken_up_when_a_command_is_refused_or_its_connection_lost(
    no_connect: None,
) -> None:
    c, t = await client()
    k, k2, other = key_on("a", "x"), key_on("a", "y"), key_on("b", "z")
    c.data_received(cmd(b"SET", k, b"1") + cmd(b"GET", other) + cmd(b"GET", k2) + cmd(b"INCR", k2))
    await asyncio.sleep(0)
    up, tu = upstream(c, "a")
    up_b, _ = upstream(c, "b")
    assert bytes(tu.out) == cmd(b"SET", k, b"1") + cmd(b"GET", k2) + cmd(b"INCR", k2)
    up_b.data_received(b"$1\r\nB\r\n")
    # A fenced primary refuses the SET (it goes again) and answers the GET; its
    # connection is lost before the INCR's reply: that one may have run.
    up.data_received(b"-READONLY You can't write against a read only replica.\r\n$1\r\nv\r\n")
    up.connection_lost(ConnectionResetError())
    assert bytes(t.out) == b""  # the SET comes first
    await asyncio.sleep(_redis.RETRY_PAUSE * 2)
    up2, tu2 = upstream(c, "a")
    assert up2 is not up and bytes(tu2.out) == cmd(b"SET", k, b"1")
    up2.data_received(b"+OK\r\n")
    out = bytes(t.out)
    assert out.startswith(b"+OK\r\n$1\r\nB\r\n$1\r\nv\r\n-ERR spofless: ")
    assert out.endswith(b"may or may not have run\r\n")
    # WAIT behind a batch whose command went again elsewhere cannot count it: 0.
    c.data_received(cmd(b"SET", k, b"2") + cmd(b"GET", k2) + cmd(b"WAIT", b"1", b"0"))
    await asyncio.sleep(0)
    up2.data_received(b"-NOREPLICAS Not enough good replicas to write.\r\n$1\r\nv\r\n:1\r\n")
    await asyncio.sleep(_redis.RETRY_PAUSE * 2)
    up3, tu3 = upstream(c, "a")
    assert up3.owner is c and bytes(tu3.out) == cmd(b"SET", k, b"2")  # after the first WAIT
    up3.data_received(b"+OK\r\n")
    assert bytes(t.out).endswith(b"run\r\n+OK\r\n$1\r\nv\r\n:0\r\n")
    c.connection_lost(None)


async def test_reads_go_to_the_replicas_and_writes_to_the_primary(
    no_connect: None,
) -> None:
    bal = Balancer(
        LbSettings.model_validate(
            {
                "instance": "lb/0",
                "mode": "redis",
                "routes": [
                    {"name": "a", "shard": "a", "fail_open": True, "exclusive": True,
                     "backends": [{"name": "a/0", "host": "127.0.0.1", "port": 1}]},
                    {"name": "a (replicas)", "shard": "a", "fail_open": True, "reads": True,
                     "backends": [{"name": "a/1", "host": "127.0.0.1", "port": 2}]},
                ],
            }
        )
    )  # fmt: skip
    bal.start(asyncio.get_running_loop())
    c = _redis.RedisClient(bal)
    t = FakeTransport()
    c.connection_made(t)  # type: ignore[arg-type]
    c.data_received(cmd(b"GET", b"k") + cmd(b"SET", b"k", b"1") + cmd(b"GET", b"k2"))
    await asyncio.sleep(0)
    primary, replica = c.ups["a/0"], c.ups["a/1"]
    assert isinstance(primary.transport, FakeTransport)
    assert isinstance(replica.transport, FakeTransport)
    assert bytes(primary.transport.out) == cmd(b"SET", b"k", b"1")
    assert bytes(replica.transport.out) == cmd(b"GET", b"k") + cmd(b"GET", b"k2")
    replica.data_received(b"$-1\r\n$1\r\n2\r\n")
    primary.data_received(b"+OK\r\n")
    assert bytes(t.out) == b"$-1\r\n+OK\r\n$1\r\n2\r\n"
    # No replica up: reads go to the primary, in order with the writes.
    bal.routes[1].live = []
    c.data_received(cmd(b"SET", b"k", b"3") + cmd(b"GET", b"k") + cmd(b"INCR", b"n"))
    await asyncio.sleep(0)
    assert bytes(primary.transport.out).endswith(
        cmd(b"SET", b"k", b"1") + cmd(b"SET", b"k", b"3") + cmd(b"GET", b"k") + cmd(b"INCR", b"n")
    )
    primary.data_received(b"+OK\r\n$1\r\n3\r\n:1\r\n")
    assert bytes(t.out).endswith(b"$1\r\n2\r\n+OK\r\n$1\r\n3\r\n:1\r\n")
    c.connection_lost(None)


async def test_mangled_pipelines_get_an_error_and_never_raise(no_connect: None) -> None:
    rng = random.Random(7)
    good = (
        cmd(b"SET", b"k1", b"v") + cmd(b"GET", b"k2") + cmd(b"get", b"{t}k3") + b"PING\r\n"
        + cmd(b"MGET", b"{t}a", b"{t}b") + cmd(b"INCR", b"k4") + cmd(b"DEL", b"k5")
    )  # fmt: skip
    for _ in range(200):
        data = bytearray(good * rng.randint(1, 3))
        for _ in range(rng.randint(1, 4)):  # flip, drop or insert bytes
            i = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[i] = rng.choice(b"*$+:-\r\n0123456789{}x")
            elif op == 1:
                del data[i]
            else:
                data.insert(i, rng.choice(b"*$+:\r\n9"))
        c, t = await client()
        cuts = sorted(rng.sample(range(1, len(data)), 3))
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            c.data_received(bytes(data[a:b]))
        await asyncio.sleep(0)
        for up in list(c.ups.values()):
            assert isinstance(up.transport, FakeTransport)
            written = bytes(up.transport.out)
            # What goes to Redis is whole commands, each as Redis reads it.
            reader = hiredis.Reader()
            reader.feed(written)
            sent = []
            while (args := reader.gets()) is not False:
                sent.append(args)
            assert b"".join(cmd(*a) for a in sent) == written
            up.data_received(b"+OK\r\n" * len(sent))
        out = bytes(t.out)
        if c.reader.error is not None:
            assert b"-ERR Protocol error: " in out and t.closed
        c.connection_lost(None)
        for up in list(c.ups.values()):
            up.close()
