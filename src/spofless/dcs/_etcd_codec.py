"""The etcd JSON gateway's encoding: base64 keys and values, int64 as strings."""

from __future__ import annotations

import base64
from typing import Any

from spofless.dcs._errors import DCSRequestError
from spofless.dcs._store import Compare, Delete, KeyValue, Op, Put, prefix_end

_COMPARE_OPS = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
_COMPARE_TARGETS = {
    "value": ("VALUE", "value"),
    "version": ("VERSION", "version"),
    "create": ("CREATE", "create_revision"),
    "mod": ("MOD", "mod_revision"),
    "lease": ("LEASE", "lease"),
}


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(data: str | None) -> str:
    return base64.b64decode(data).decode() if data else ""


def decode_kv(kv: dict[str, Any]) -> KeyValue:
    """A KeyValue from the gateway's JSON (int64 fields arrive as strings, zeros omitted)."""
    return KeyValue(
        key=unb64(kv.get("key")),
        value=unb64(kv.get("value")),
        create_revision=int(kv.get("create_revision", 0)),
        mod_revision=int(kv.get("mod_revision", 0)),
        version=int(kv.get("version", 0)),
        lease=int(kv.get("lease", 0)),
    )


def header_revision(body: dict[str, Any]) -> int:
    return int(body.get("header", {}).get("revision", 0))


def range_request(key: str, prefix: bool, revision: int = 0) -> dict[str, Any]:
    # etcd spells "every key" as key "\0" with range_end "\0".
    req: dict[str, Any] = {"key": b64(key or b"\0") if prefix else b64(key)}
    if prefix:
        req["range_end"] = b64(prefix_end(key))
    if revision:
        req["revision"] = revision
    return req


def encode_compare(c: Compare) -> dict[str, Any]:
    target, field = _COMPARE_TARGETS[c.target]
    if (c.target == "value") != isinstance(c.operand, str):
        raise DCSRequestError(f"compare {c.target} of {c.key!r} with {c.operand!r}: wrong type")
    operand = b64(c.operand) if isinstance(c.operand, str) else str(c.operand)
    return {"key": b64(c.key), "target": target, "result": _COMPARE_OPS[c.op], field: operand}


def encode_op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": b64(op.key), "value": b64(op.value)}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    if isinstance(op, Delete):
        return {"request_delete_range": range_request(op.key, op.prefix)}
    return {"request_range": range_request(op.key, op.prefix)}
