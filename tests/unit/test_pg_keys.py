"""The cluster's etcd keys read into a ClusterState; a bad value is skipped, not fatal."""

from __future__ import annotations

import json

from spofless.dcs import KeyValue
from spofless.pg import Role, Switchover
from spofless.pg._keys import parse_cluster

P = "/spofless/t/db"


def kv(key: str, value: str, create_revision: int = 1) -> KeyValue:
    return KeyValue(f"{P}/{key}", value, create_revision, create_revision, 1, 0)


def test_every_key_is_read() -> None:
    member = {"name": "db-1", "running": True, "role": "replica", "wal_position": 7}
    state, statuses = parse_cluster(
        P,
        [
            kv("leader", "db-0", 42),
            kv("initialize", "7300000000000000001"),
            kv("optime", "1024"),
            kv("config", '{"paused": true}'),
            kv("switchover", '{"leader": "db-0", "candidate": null}'),
            kv("sync", json.dumps({"leader": "db-0", "members": ["db-1"]})),
            kv("members/db-1", json.dumps(member)),
        ],
    )
    assert state.leader is not None and state.leader.token == 42
    assert state.initialized and state.system_id == "7300000000000000001"
    assert state.leader_wal_position == 1024 and state.paused
    assert state.switchover == Switchover("db-0", None)
    assert state.sync.members == frozenset({"db-1"})
    assert state.members["db-1"].role is Role.REPLICA and statuses[0].wal_position == 7


def test_a_bad_value_is_skipped() -> None:
    state, _ = parse_cluster(P, [kv("config", "{not json"), kv("leader", "db-0")])
    assert not state.paused and state.leader is not None
