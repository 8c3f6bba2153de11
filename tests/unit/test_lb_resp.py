"""The redis mode's pure parts: RESP parsing, reply framing, keys and consistent hashing."""

from __future__ import annotations

import pytest

from spofless.lb._resp import (
    ProtocolError,
    ShardRing,
    command_keys,
    hash_slot_key,
    is_retry_safe,
    parse_command,
    reply_end,
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
