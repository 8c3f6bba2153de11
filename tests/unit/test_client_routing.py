"""spofless.client's pure parts: members from /cluster JSON, which member reads go to."""

from __future__ import annotations

from spofless.client import Member, choose_reader, members_from_cluster_json

CLUSTER = {
    "leader": "db-0",
    "members": [
        {"name": "db-1", "running": True, "role": "replica", "streaming": True, "dsn": "b"},
        {"name": "db-0", "running": True, "role": "primary", "leader": True, "dsn": "a"},
        {"name": "db-2", "running": True, "role": "replica", "streaming": False, "dsn": "c"},
        {"name": "db-3", "running": False, "role": None, "dsn": "d"},
    ],
}


def test_members_from_cluster_json() -> None:
    members = members_from_cluster_json(CLUSTER)
    assert [m.name for m in members] == ["db-0", "db-1", "db-2"]  # db-3 is not running
    assert [m.name for m in members if m.primary] == ["db-0"]
    assert [m.name for m in members if m.replica] == ["db-1"]  # db-2 does not stream


def test_reads_round_robin_over_healthy_replicas() -> None:
    members = [Member("p", "p", True, False), Member("r1", "1", False, True)]
    members.append(Member("r2", "2", False, True))
    picked = [choose_reader(members, turn) for turn in range(4)]
    assert [m.name for m in picked if m] == ["r1", "r2", "r1", "r2"]


def test_reads_fall_back_to_the_primary_without_replicas() -> None:
    members = [Member("p", "p", True, False), Member("r", "r", False, False)]
    chosen = choose_reader(members, 0)
    assert chosen is not None and chosen.name == "p"
    assert choose_reader([Member("r", "r", False, False)], 0) is None
