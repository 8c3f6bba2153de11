"""A standby cluster's decisions (spofless.pg._standby), case by case: plain views."""

from __future__ import annotations

import pytest

from spofless.pg import (
    Action,
    ClusterState,
    DiskPosition,
    LeaderKey,
    Lease,
    LocalState,
    Role,
    View,
    decide,
)
from spofless.pg.view import RemotePrimary

UP = RemotePrimary(True, timeline=2, position=200)
DOWN = RemotePrimary(False)


def standby(**kw: object) -> ClusterState:
    fields: dict[str, object] = {
        "initialized": True,
        "leader": LeaderKey("eu-0", 7),
        "standby_of": "db",
    }
    fields.update(kw)
    return ClusterState(**fields)  # type: ignore[arg-type]


def lead(local: LocalState, c: ClusterState, remote: RemotePrimary | None = UP) -> View:
    return View("eu-0", local, Lease(True, 7, 2.0), c, remote=remote)


def running(
    role: Role, following: str | None = "db", streaming: bool = True, tl: int = 1
) -> LocalState:
    return LocalState(
        has_data=True,
        running=True,
        role=role,
        timeline=tl,
        wal_position=100,
        following=following,
        streaming=streaming,
        not_streaming_for=0 if streaming else 30,
    )


def test_the_standby_leader_never_promotes_and_renews_while_streaming() -> None:
    d = decide(lead(running(Role.REPLICA), standby()))
    assert d.action is Action.RENEW and "streaming from the primary cluster db" in d.reason


def test_a_new_standby_leader_points_itself_at_the_primary_cluster() -> None:
    d = decide(lead(running(Role.REPLICA, following="eu-1"), standby()))
    assert (d.action, d.target) == (Action.FOLLOW, "db")


def test_a_primary_in_a_cluster_made_standby_steps_down() -> None:
    d = decide(lead(running(Role.PRIMARY, following=None), standby()))
    assert d.action is Action.STEP_DOWN


def test_an_old_primary_rejoins_only_by_rewind_once_the_new_primary_answers() -> None:
    was = LocalState(
        has_data=True,
        was_primary=True,
        disk=DiskPosition("shut down", 1, 500, shutdown_checkpoint=True),
    )
    assert decide(lead(was, standby(), remote=DOWN)).action is Action.WAIT
    assert decide(lead(was, standby(), remote=None)).action is Action.WAIT
    d = decide(lead(was, standby()))
    assert (d.action, d.target) == (Action.REWIND, "db")


def test_a_crashed_old_primary_recovers_first() -> None:
    crashed = LocalState(
        has_data=True, was_primary=True, disk=DiskPosition("in production", 1, None)
    )
    assert decide(lead(crashed, standby())).action is Action.RECOVER


def test_a_stopped_standby_leader_starts_as_a_standby_of_the_primary_cluster() -> None:
    stopped = LocalState(has_data=True, disk=DiskPosition("shut down in recovery", 1, 100))
    d = decide(lead(stopped, standby(), remote=DOWN))
    assert (d.action, d.target) == (Action.START_REPLICA, "db")


@pytest.mark.parametrize(
    ("remote", "tl", "action"),
    [(UP, 1, Action.REWIND), (UP, 2, Action.RENEW), (DOWN, 1, Action.RENEW)],
)
def test_a_standby_leader_behind_a_new_primary_timeline_is_rewound(
    remote: RemotePrimary, tl: int, action: Action
) -> None:
    local = running(Role.REPLICA, streaming=False, tl=tl)
    assert decide(lead(local, standby(), remote=remote)).action is action


def test_a_new_standby_cluster_is_cloned_from_the_primary_cluster() -> None:
    empty = LocalState(has_data=False)
    c = standby(initialized=False)
    assert decide(lead(empty, c, remote=DOWN)).action is Action.WAIT
    d = decide(lead(empty, c))
    assert (d.action, d.target) == (Action.BOOTSTRAP, "db")


def test_standby_members_clone_from_the_standby_leader() -> None:
    from spofless.pg import Member

    c = standby(members={"eu-0": Member("eu-0", Role.REPLICA, running=True)})
    v = View("eu-1", LocalState(has_data=False), Lease(), c)
    d = decide(v)
    assert (d.action, d.target) == (Action.CLONE, "eu-0")


def test_made_primary_again_the_standby_leader_promotes() -> None:
    d = decide(lead(running(Role.REPLICA), standby(standby_of=None)))
    assert d.action is Action.PROMOTE


def test_the_standby_key_overrides_the_topology() -> None:
    from spofless.dcs import KeyValue
    from spofless.pg._keys import parse_cluster

    def kv(value: str) -> KeyValue:
        return KeyValue("/p/standby", value, 2, 2, 1)

    assert parse_cluster("/p", [], "db")[0].standby_of == "db"
    promoted, _ = parse_cluster("/p", [kv('{"of": null, "epoch": 3}')], "db")
    assert (promoted.standby_of, promoted.standby_epoch) == (None, 3)
    fenced, _ = parse_cluster("/p", [kv('{"of": "db_eu", "epoch": 4}')])
    assert (fenced.standby_of, fenced.standby_epoch) == ("db_eu", 4)
    bad, _ = parse_cluster("/p", [kv("nope")], "db")
    assert bad.standby_of == "db"  # an unreadable key is skipped, never a crash


async def test_a_newer_primary_elsewhere_makes_this_cluster_its_standby() -> None:
    import json

    from spofless.dcs import MemoryStore
    from spofless.pg._remote import PeerClaims

    claims = PeerClaims([], None, 1.0)
    store = MemoryStore()
    state = ClusterState(initialized=True, standby_epoch=2)
    assert await claims.apply("db-0", store, "/p", state) is state  # nobody claims
    claims.claims["db_eu"] = 2
    assert await claims.apply("db-0", store, "/p", state) is state  # not newer
    claims.claims["db_eu"] = 3
    after = await claims.apply("db-0", store, "/p", state)
    assert (after.standby_of, after.standby_epoch) == ("db_eu", 3)
    (kv,) = (await store.range("/p/standby")).kvs
    assert json.loads(kv.value) == {"of": "db_eu", "epoch": 3}  # recorded in its own etcd
