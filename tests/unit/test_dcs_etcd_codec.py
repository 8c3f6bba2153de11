"""The etcd gateway's encoding and the watch stream's messages, fed as text (no etcd)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from spofless.dcs import CompactedError, Compare, DCSRequestError, EtcdStore, Put
from spofless.dcs._etcd_codec import b64, decode_kv, encode_compare, encode_op, range_request
from spofless.dcs._etcd_watch import EtcdWatch, _Reconnect
from spofless.dcs._store import prefix_end


def test_prefix_end_and_every_key() -> None:
    assert prefix_end("a/") == b"a0"
    assert prefix_end("a\xff") == "a\xff".encode()[:-1] + b"\xc0"
    assert range_request("", prefix=True) == {"key": b64(b"\0"), "range_end": b64(b"\0")}
    assert range_request("k", prefix=False, revision=7) == {"key": b64("k"), "revision": 7}


def test_compare_and_op_encoding() -> None:
    assert encode_compare(Compare.create_revision("k", "==", 0)) == {
        "key": b64("k"),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "0",
    }
    assert encode_compare(Compare.value("k", "!=", "v"))["value"] == b64("v")
    with pytest.raises(DCSRequestError, match="wrong type"):
        encode_compare(Compare("k", "value", "==", 3))
    assert encode_op(Put("k", "v", lease=12)) == {
        "request_put": {"key": b64("k"), "value": b64("v"), "lease": "12"}
    }


def test_decode_kv_defaults_omitted_zero_fields() -> None:
    kv = decode_kv({"key": b64("k"), "create_revision": "4", "mod_revision": "9", "version": "3"})
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (
        "k",
        "",
        4,
        9,
        3,
        0,
    )


def line(result: dict[str, object]) -> str:
    return json.dumps({"result": result})


def kv(key: str, rev: int) -> dict[str, str]:
    return {"key": b64(key), "value": b64("v"), "mod_revision": str(rev), "create_revision": "2"}


@pytest.fixture
async def store() -> AsyncIterator[EtcdStore]:
    s = EtcdStore(["http://127.0.0.1:9"])  # never contacted
    yield s
    await s.close()


async def test_watch_stream_messages_move_the_resume_revision(store: EtcdStore) -> None:
    w = EtcdWatch(store, "k", prefix=True, start_revision=0)
    w._handle(line({"header": {"revision": "10"}, "created": True}))
    assert w.next_revision == 11  # from now: the first event after the created header
    w._handle(
        line(
            {
                "header": {"revision": "12"},
                "events": [{"kv": kv("k1", 11)}, {"type": "DELETE", "kv": kv("k2", 12)}],
            }
        )
    )
    assert [e.type for e in w._ready] == ["put", "delete"]
    assert w.next_revision == 11
    w._ready.clear()
    assert w.next_revision == 13
    w._handle(line({"header": {"revision": "20"}}))  # a progress notification
    assert w.next_revision == 21
    w._handle(line({"header": {"revision": "25"}, "created": True}))  # a resumed stream
    assert w.next_revision == 21
    w._handle("")  # blank lines between messages are fine


async def test_watch_stream_cancel_error_and_compaction(store: EtcdStore) -> None:
    w = EtcdWatch(store, "k", prefix=False, start_revision=5)
    with pytest.raises(_Reconnect, match="no leader"):
        w._handle(json.dumps({"error": {"grpc_code": 14, "message": "etcdserver: no leader"}}))
    with pytest.raises(_Reconnect, match="cancelled"):
        w._handle(line({"canceled": True}))
    with pytest.raises(CompactedError, match="revision 5 was compacted") as err:
        w._handle(line({"compact_revision": "8", "canceled": True}))
    assert err.value.compact_revision == 8
