"""RESP (the Redis protocol) for the load balancer's redis mode: pure parsing and routing.

    CommandReader().feed(data) -> [args, ...]         client commands, in bulk (hiredis)
    parse_command(buf, pos) -> (args, end) | None    one client command (array or inline)
    encode_command(args) -> bytes                     a command as a server reads it
    reply_ends(buf, pos, limit) -> (ends, errors)     where the next server replies end
    reply_end(buf, pos) -> end | -1                   where one server reply ends
    command_keys(args) -> keys | None                 the keys a command touches; None: keyless
    ShardRing(names).shard_of(key)                    consistent hashing over shard names

A key is hashed whole, or only its hash tag (the part between the first `{` and
the next `}`, when not empty), as Redis Cluster and twemproxy do: keys that
share a tag live on one shard, so a multi-key command over them works.
No I/O here; `_redis` drives it.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Sequence
from zlib import crc32

import hiredis


class ProtocolError(ValueError):
    """The client sent something that is not RESP."""


MAX_BULK = 512 * 1024 * 1024  # Redis's own proto-max-bulk-len
MAX_ARGS = 1024 * 1024


def _line(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(end of the line's text, start of the next line) or None when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > 65536:
            raise ProtocolError("line too long")
        return None
    return end, end + 2


def _int(buf: bytes | bytearray, start: int, end: int) -> int:
    text = bytes(buf[start:end])
    if not text.removeprefix(b"-").isdigit():  # int() would take spaces, `+`, `_`
        raise ProtocolError("invalid length")
    return int(text)


def parse_command(buf: bytes | bytearray, pos: int) -> tuple[list[bytes], int] | None:
    """The command starting at `pos` and where it ends; None until it is complete."""
    n = len(buf)
    if pos >= n:
        return None
    if buf[pos] != 0x2A:  # '*': else an inline command, words separated by spaces
        line = _line(buf, pos)
        if line is None:
            return None
        return bytes(buf[pos : line[0]]).split(), line[1]
    # The hot path of redis mode, written out: one find and one int() per argument.
    find = buf.find
    nl = find(b"\r\n", pos)
    if nl < 0:
        _line(buf, pos)  # raises on an overlong line
        return None
    count = _int(buf, pos + 1, nl)
    if count > MAX_ARGS:
        raise ProtocolError("too many arguments")
    args: list[bytes] = []
    p = nl + 2
    for _ in range(count):
        if p >= n:
            return None
        if buf[p] != 0x24:  # '$'
            raise ProtocolError(f"expected '$', got {chr(buf[p])!r}")
        nl = find(b"\r\n", p)
        if nl < 0:
            _line(buf, p)
            return None
        text = bytes(buf[p + 1 : nl])
        if not text.isdigit():  # int() would take spaces, `+`, `_`
            raise ProtocolError("invalid bulk length")
        size = int(text)
        if size > MAX_BULK:
            raise ProtocolError("invalid bulk length")
        p = nl + 2 + size
        if p + 2 > n:
            return None
        args.append(bytes(buf[nl + 2 : p]))
        p += 2
    return args, p


class CommandReader:
    """A client connection's commands, parsed in bulk as its bytes come.

    RESP arrays of bulk strings (what client libraries send) are parsed by
    hiredis's reader, in C, and encoded again for the server (`encode_command`);
    inline commands (`PING\\r\\n` typed in telnet) by `parse_command`, encoded the
    same way: the shards' shared connections get only what Redis reads strictly
    (one command it refuses would close them for every client). `feed` returns
    the complete commands as (args, raw) pairs (args never empty) and switches
    to `parse_command` when a command that starts right where the stream is
    does not start with `*`. It knows where
    the stream is by the encoded length of what hiredis returned (a client that
    pads its lengths, `$03`, is never known to be there: it stays on hiredis).

    An inline command behind arrays in one read makes hiredis fail: that read is
    parsed again by `parse_command`, skipping the commands hiredis returned.
    After a protocol error, `feed` returns the commands before it, sets `error`
    and takes nothing more. (hiredis takes a simple string, `+x`, for a bulk
    string: such a command is passed on as if it had been sent as one.)
    """

    def __init__(self) -> None:
        self._hiredis = hiredis.Reader()
        self._pending = 0  # bytes hiredis has that are not (encoded) commands returned
        self._inline = b""  # bytes not yet parsed, when on parse_command
        self.error: str | None = None

    def feed(self, data: bytes) -> list[tuple[list[bytes], bytes]]:
        if self.error is not None:
            return []
        if self._inline or (not self._pending and data[:1] != b"*"):
            return self._parse_python(self._inline + data if self._inline else data)
        fresh = not self._pending  # `data` starts a command
        reader = self._hiredis
        reader.feed(data)
        pending = self._pending + len(data)
        out: list[tuple[list[bytes], bytes]] = []
        empty = 0  # `*0`: nothing to do, as Redis does
        gets = reader.gets
        try:
            while (args := gets()) is not False:
                # Only arrays of bulk strings are commands (encoding refuses other items).
                if type(args) is not list:
                    raise ProtocolError("expected an array of bulk strings")
                n = len(args)
                if n == 3:  # the common shapes, encoded here (a call less)
                    a, b, c = args
                    raw = _ENCODE_3 % (len(a), a, len(b), b, len(c), c)
                elif n == 2:
                    a, b = args
                    raw = _ENCODE_2 % (len(a), a, len(b), b)
                elif n and n <= MAX_ARGS:
                    raw = encode_command(args)
                elif n:
                    raise ProtocolError("too many arguments")
                else:
                    empty += 1
                    pending -= 4
                    continue
                pending -= len(raw)
                out.append((args, raw))
        except (hiredis.ProtocolError, ProtocolError, TypeError, MemoryError) as exc:
            self._hiredis = hiredis.Reader()
            self._pending = 0
            if not fresh:  # where the failing command starts is not known
                self.error = str(exc)
                return out
            # Parse the read again in Python, which takes inline commands and names
            # what is wrong otherwise.
            pos = 0
            try:
                for _ in range(len(out) + empty):
                    parsed = parse_command(data, pos)
                    assert parsed is not None  # hiredis returned it whole
                    pos = parsed[1]
            except ProtocolError as exc2:
                self.error = str(exc2)
                return out
            out.extend(self._parse_python(data[pos:]))
            return out
        self._pending = pending
        return out

    def _parse_python(self, buf: bytes) -> list[tuple[list[bytes], bytes]]:
        out: list[tuple[list[bytes], bytes]] = []
        pos = 0
        n = len(buf)
        self._inline = b""
        try:
            while pos < n:
                if buf[pos] == 0x2A and out:  # '*' behind inline commands: back to hiredis
                    out.extend(self.feed(buf[pos:]))
                    return out
                parsed = parse_command(buf, pos)
                if parsed is None:
                    break
                args, end = parsed
                if args:
                    out.append((args, encode_command(args)))  # as Redis reads it
                pos = end
        except ProtocolError as exc:
            self.error = str(exc)
            return out
        self._inline = buf[pos:]
        return out


_ENCODE_2 = b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
_ENCODE_3 = b"*3\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"


def encode_command(args: Sequence[bytes]) -> bytes:
    """`args` as a RESP array of bulk strings (the common shapes written out)."""
    n = len(args)
    if n == 2:
        a, b = args
        return _ENCODE_2 % (len(a), a, len(b), b)
    if n == 3:
        a, b, c = args
        return _ENCODE_3 % (len(a), a, len(b), b, len(c), c)
    return b"*%d\r\n" % n + b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args])


_AGGREGATE = {0x2A: 1, 0x7E: 1, 0x3E: 1, 0x25: 2, 0x7C: 2}  # * ~ > : items; % | : pairs
_BLOB = frozenset(b"$=!")  # bulk string, verbatim string, blob error


def reply_end(buf: bytes | bytearray, pos: int) -> int:
    """Where the reply starting at `pos` ends, or -1 while it is incomplete."""
    todo = 1
    p = pos
    n = len(buf)
    while todo:
        if p >= n:
            return -1
        end = buf.find(b"\r\n", p)
        if end < 0:
            return -1
        t = buf[p]
        todo -= 1
        if t in _BLOB:
            size = int(buf[p + 1 : end])
            p = end + 2 if size < 0 else end + 2 + size + 2
        elif t in _AGGREGATE:
            count = int(buf[p + 1 : end])
            if count > 0:
                todo += count * _AGGREGATE[t]
            p = end + 2
        else:  # + - : _ # , ( : one line
            p = end + 2
    return p if p <= n else -1


_OK = b"+OK\r\n"


def reply_ends(buf: bytes, pos: int, limit: int) -> tuple[list[int], bool]:
    """Where each of the (at most `limit`) complete replies from `pos` ends, and
    whether any of them is an error. Bulk strings and one-line replies, nearly all
    of a cache's traffic, are framed here; the others by `reply_end`."""
    n = len(buf)
    run = min(limit, (n - pos) // 5)
    if run > 1 and buf.startswith(_OK, pos) and buf[pos : pos + 5 * run] == _OK * run:
        return list(range(pos + 5, pos + 5 * run + 1, 5)), False  # writes' replies, at once
    ends: list[int] = []
    append = ends.append
    errors = False
    find = buf.find
    for _ in range(limit):
        if pos >= n:
            break
        t = buf[pos]
        if t == 0x24:  # '$'
            nl = find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(buf[pos + 1 : nl])
            end = nl + 4 + size if size >= 0 else nl + 2
            if end > n:
                break
        elif t == 0x2B or t == 0x3A:  # '+' ':'
            nl = find(b"\r\n", pos)
            if nl < 0:
                break
            end = nl + 2
        else:
            errors = errors or t == 0x2D  # '-'
            end = reply_end(buf, pos)
            if end < 0:
                break
        append(end)
        pos = end
    return ends, errors


# Commands spofless answers itself, and those it refuses (they need one server for the
# whole connection or the whole keyspace, which a sharding proxy cannot give).
LOCAL = frozenset({b"PING", b"ECHO", b"QUIT", b"SELECT", b"HELLO", b"CLIENT"})
UNSUPPORTED = frozenset(
    {b"MULTI", b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH", b"SUBSCRIBE", b"PSUBSCRIBE",
     b"SSUBSCRIBE", b"MONITOR", b"KEYS", b"SCAN", b"FLUSHALL", b"FLUSHDB", b"RANDOMKEY",
     b"DBSIZE", b"AUTH", b"CONFIG", b"SHUTDOWN", b"REPLICAOF",
     b"SLAVEOF", b"SCRIPT", b"EVAL", b"EVALSHA", b"FUNCTION", b"FCALL", b"SWAPDB",
     b"BLPOP", b"BRPOP", b"BLMOVE", b"BZPOPMIN", b"BZPOPMAX", b"XREAD", b"XREADGROUP"}
)  # fmt: skip
# Every argument is a key.
ALL_KEYS = frozenset(
    {b"MGET", b"DEL", b"UNLINK", b"EXISTS", b"TOUCH", b"SINTER", b"SUNION", b"SDIFF",
     b"PFCOUNT", b"WATCH"}
)  # fmt: skip
# key value key value ...
PAIRS = frozenset({b"MSET", b"MSETNX"})
# The first two arguments are keys.
TWO_KEYS = frozenset(
    {b"RENAME", b"RENAMENX", b"SMOVE", b"RPOPLPUSH", b"LMOVE", b"COPY", b"SINTERSTORE",
     b"SUNIONSTORE", b"SDIFFSTORE"}
)  # fmt: skip
# Read-only: sent to a replica with `read_from: replica`, and retried on a failover.
READS = frozenset(
    {b"GET", b"MGET", b"EXISTS", b"TTL", b"PTTL", b"STRLEN", b"GETRANGE", b"TYPE",
     b"HGET", b"HMGET", b"HGETALL", b"HEXISTS", b"HLEN", b"HKEYS", b"HVALS", b"HSTRLEN",
     b"LRANGE", b"LLEN", b"LINDEX", b"LPOS", b"SMEMBERS", b"SISMEMBER", b"SMISMEMBER",
     b"SCARD", b"SRANDMEMBER", b"SINTER", b"SUNION", b"SDIFF", b"ZRANGE", b"ZRANGEBYSCORE",
     b"ZREVRANGE", b"ZSCORE", b"ZMSCORE", b"ZCARD", b"ZCOUNT", b"ZRANK", b"ZREVRANK",
     b"PFCOUNT", b"GETBIT", b"BITCOUNT", b"EXPIRETIME", b"PEXPIRETIME", b"OBJECT", b"DUMP"}
)  # fmt: skip
# Commands whose one key is their first argument (the hot path), and their names as
# clients spell them (upper or lower case) -> upper case.
SINGLE_KEY = READS.union(
    {b"SET", b"SETEX", b"PSETEX", b"SETNX", b"GETSET", b"GETDEL", b"GETEX", b"APPEND",
     b"INCR", b"DECR", b"INCRBY", b"DECRBY", b"INCRBYFLOAT", b"EXPIRE", b"PEXPIRE",
     b"EXPIREAT", b"PEXPIREAT", b"PERSIST", b"HSET", b"HSETNX", b"HMSET", b"HDEL",
     b"HINCRBY", b"LPUSH", b"RPUSH", b"LPOP", b"RPOP", b"LSET", b"LTRIM", b"LREM", b"SADD",
     b"SREM", b"SPOP", b"ZADD", b"ZREM", b"ZINCRBY", b"SETRANGE", b"SETBIT", b"PFADD"}
) - ALL_KEYS - TWO_KEYS - PAIRS  # fmt: skip
UPPER = {name.lower(): name for name in SINGLE_KEY} | {name: name for name in SINGLE_KEY}
# Writes whose repetition leaves the same state: retried when the primary's connection
# is lost before their reply (they may have run once already).
IDEMPOTENT = frozenset(
    {b"SET", b"MSET", b"DEL", b"UNLINK", b"HSET", b"HMSET", b"HDEL", b"SADD", b"SREM",
     b"ZADD", b"ZREM", b"EXPIREAT", b"PEXPIREAT", b"PERSIST", b"SETEX", b"PSETEX"}
)  # fmt: skip
# SET options that make a repetition differ from the first run.
_SET_NOT_IDEMPOTENT = frozenset({b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX"})


def command_keys(name: bytes, args: Sequence[bytes]) -> Sequence[bytes] | None:
    """The keys of a command (`name` upper-cased, `args` whole); None for a keyless one."""
    if name in ALL_KEYS:
        return args[1:]
    if name in PAIRS:
        return args[1::2]
    if name in TWO_KEYS:
        return args[1:3]
    if len(args) < 2:
        return None
    return args[1:2]


def is_retry_safe(name: bytes, args: Sequence[bytes]) -> bool:
    """Whether running the command twice is harmless (a read, or an idempotent write)."""
    if name in READS:
        return True
    if name == b"SET":
        return not any(a.upper() in _SET_NOT_IDEMPOTENT for a in args[3:])
    return name in IDEMPOTENT


def hash_slot_key(key: bytes) -> bytes:
    """The part of `key` that is hashed: its hash tag when it has a non-empty one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


class ShardRing:
    """Consistent hashing of keys over shards (ketama-style, `points` per shard).

    Removing a shard moves only its own keys; adding one takes about 1/n of the others'.
    No bounded load: a key must always be found on the one shard that holds it.

    `table[h >> 16]` is the shard of every hash `h` in that slice of the ring, or None
    for the few slices a point falls in (searched then): one look-up per key, with no
    cache to grow or miss.
    """

    def __init__(self, shards: Sequence[str], points: int = 160) -> None:
        ring: list[tuple[int, str]] = []
        for name in shards:
            for i in range(points):
                digest = hashlib.md5(f"{name}-{i}".encode()).digest()
                ring.append((int.from_bytes(digest[:4], "little"), name))
        ring.sort()
        hashes = self._hashes = [h for h, _ in ring]
        names = self._names = [n for _, n in ring]
        table: list[str | None] = [None] * 65536
        i = 0
        n = len(hashes)
        for b in range(65536 if n else 0):
            lo = b << 16
            while i < n and hashes[i] < lo:
                i += 1
            if i == n or hashes[i] > lo + 0xFFFF:  # no point inside: one shard throughout
                table[b] = names[i] if i < n else names[0]
        self.table = table if len(set(names)) != 1 else [names[0]] * 65536

    def shard_of(self, key: bytes) -> str:
        h = crc32(hash_slot_key(key) if 0x7B in key else key)  # '{': a hash tag, maybe
        shard = self.table[h >> 16]
        if shard is not None:
            return shard
        i = bisect_left(self._hashes, h)
        names = self._names
        return names[i] if i < len(names) else names[0]
