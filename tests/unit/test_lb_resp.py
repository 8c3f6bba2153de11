"""The redis mode's pure parts: RESP parsing, reply framing, keys and consistent hashing."""

from __future__ import annotations

import pytest

from spofless.lb._resp import (
    CommandReader,
    ProtocolError,
    ShardRing,
    command_keys,
    encode_command,
    hash_slot_key,
    is_retry_safe,
    parse_command,
    reply_end,
    reply_ends,
)


def test_commands_are_parsed_whole_or_not_at_all() -> None:
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*1\r\n$4\r\nPING\r\n"
    args, end = parse_command(data, 0) or ([], 0)
    assert args == [b"SET", b"k", b"v1"]
    assert parse_command(data, end) == ([b"PING"], len(data))
    for cut in range(1, end):
        assert parse_command(data[:cut], 0) is None
    assert parse_command(b"GET k\r\n", 0) == ([b"GET", b"k"], 7)  # inline
    with pytest.raises(ProtocolError):
        parse_command(b"*1\r\n:3\r\n", 0)


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_commands_are_read_in_bulk_whatever_the_cuts() -> None:
    stream = cmd(b"SET", b"k", b"v\r\n1") + cmd(b"GET", b"k") + b"*0\r\n" + cmd(b"MGET", b"a", b"b")
    want = [[b"SET", b"k", b"v\r\n1"], [b"GET", b"k"], [b"MGET", b"a", b"b"]]
    for size in (1, 2, 3, 7, len(stream)):
        r = CommandReader()
        got = []
        for i in range(0, len(stream), size):
            got += r.feed(stream[i : i + size])
        assert [args for args, _ in got] == want and r.error is None
        assert [raw for _, raw in got] == [encode_command(a) for a in want]
    assert encode_command([b"SET", b"k", b"v\r\n1"]) == cmd(b"SET", b"k", b"v\r\n1")
    assert encode_command([b"DEL", b"a", b"b", b"c"]) == cmd(b"DEL", b"a", b"b", b"c")


def test_inline_commands_mix_with_arrays() -> None:
    r = CommandReader()
    got = r.feed(b"PING\r\n" + cmd(b"GET", b"k") + b"ECHO hi\r\n" + cmd(b"GET", b"x"))
    got += r.feed(b"QUIT\r\n")
    assert [args for args, _ in got] == [
        [b"PING"], [b"GET", b"k"], [b"ECHO", b"hi"], [b"GET", b"x"], [b"QUIT"]
    ]  # fmt: skip
    assert [raw for _, raw in got] == [encode_command(args) for args, _ in got]
    assert r.error is None


@pytest.mark.parametrize(
    "bad",
    [b"*1\r\n:3\r\n", b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n", b"*1\r\n$x\r\n", b"*1\r\n-ERR\r\n",
     b"*1\r\n$\n4\r\nPING\r\n", b"*1\r\n$+4\r\nPING\r\n", b"* 1\r\n$4\r\nPING\r\n"],
)  # fmt: skip
def test_what_is_not_a_command_stops_the_reader_after_the_good_ones(bad: bytes) -> None:
    r = CommandReader()
    got = r.feed(cmd(b"GET", b"k") + bad + cmd(b"GET", b"j"))
    assert [args for args, _ in got] == [[b"GET", b"k"]]
    assert r.error and r.feed(cmd(b"GET", b"k")) == []


def test_replies_are_framed_in_bulk() -> None:
    data = b"+OK\r\n$3\r\nabc\r\n$-1\r\n:5\r\n*1\r\n:1\r\n-ERR x\r\n$4\r\nab"
    ends, errors = reply_ends(data, 0, 100)
    assert ends == [5, 14, 19, 23, 31, 39] and errors
    assert reply_ends(data, 0, 3) == ([5, 14, 19], False)
    assert reply_ends(b"$3\r\nab", 0, 5) == ([], False)
    oks = b"+OK\r\n" * 4 + b"+OK\r"
    assert reply_ends(oks, 0, 9) == ([5, 10, 15, 20], False)
    assert reply_ends(oks, 5, 2) == ([10, 15], False)
    assert reply_ends(b"+OK\r\n+OK\r\n-ERR\r\n", 0, 3) == ([5, 10, 16], True)


@pytest.mark.parametrize(
    "reply",
    [b"+OK\r\n", b"-ERR x\r\n", b":12\r\n", b"$-1\r\n", b"$3\r\nabc\r\n", b"*-1\r\n",
     b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"%1\r\n+a\r\n:1\r\n", b"*0\r\n", b"$4\r\na\r\nb\r\n"],
)  # fmt: skip
def test_a_reply_ends_where_it_ends(reply: bytes) -> None:
    assert reply_end(reply + b"+NEXT\r\n", 0) == len(reply)
    for cut in range(len(reply)):
        assert reply_end(reply[:cut], 0) == -1


def test_keys_of_commands() -> None:
    assert command_keys(b"GET", [b"GET", b"k"]) == [b"k"]
    assert command_keys(b"MSET", [b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert command_keys(b"DEL", [b"DEL", b"a", b"b"]) == [b"a", b"b"]
    assert command_keys(b"RENAME", [b"RENAME", b"a", b"b"]) == [b"a", b"b"]
    assert command_keys(b"TIME", [b"TIME"]) is None
    assert hash_slot_key(b"{user1}.cart") == b"user1" and hash_slot_key(b"{}x") == b"{}x"


def test_only_harmless_commands_are_retried_after_a_lost_reply() -> None:
    assert is_retry_safe(b"GET", [b"GET", b"k"])
    assert is_retry_safe(b"SET", [b"SET", b"k", b"v"])
    assert not is_retry_safe(b"SET", [b"SET", b"k", b"v", b"NX"])
    assert not is_retry_safe(b"INCR", [b"INCR", b"k"])


def test_removing_a_shard_moves_only_its_own_keys() -> None:
    keys = [f"key:{i}".encode() for i in range(5000)]
    three = ShardRing(["a", "b", "c"])
    two = ShardRing(["a", "b"])
    before = {k: three.shard_of(k) for k in keys}
    moved = [k for k in keys if before[k] != "c" and two.shard_of(k) != before[k]]
    assert moved == []
    share = sum(1 for k in keys if before[k] == "c") / len(keys)
    assert 0.2 < share < 0.47  # about a third each
    # Tagged keys land together.
    assert three.shard_of(b"{u1}.a") == three.shard_of(b"{u1}.b")
