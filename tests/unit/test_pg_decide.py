"""The failover state machine, case by case: no processes, no mocks, plain views."""

from __future__ import annotations

import dataclasses

import pytest

from spofless.pg import (
    Action,
    ClusterState,
    DiskPosition,
    LeaderKey,
    Lease,
    LocalState,
    Member,
    Policy,
    Role,
    Switchover,
    SyncState,
    TimelineHistory,
    TimelineSwitch,
    View,
    decide,
    format_lsn,
    parse_lsn,
)

MB = 1024 * 1024


def primary(pos: int = 100 * MB, tl: int = 1) -> LocalState:
    return LocalState(has_data=True, running=True, role=Role.PRIMARY, timeline=tl, wal_position=pos)


def replica(
    pos: int = 100 * MB, following: str | None = "a", tl: int = 1, streaming: bool = True
) -> LocalState:
    return LocalState(
        has_data=True,
        running=True,
        role=Role.REPLICA,
        timeline=tl,
        wal_position=pos,
        following=following,
        streaming=streaming,
    )


def member(
    name: str, role: Role = Role.REPLICA, pos: int = 100 * MB, reachable: bool = True, tl: int = 1
) -> Member:
    return Member(name, role, running=True, timeline=tl, wal_position=pos, reachable=reachable)


HISTORY_2 = TimelineHistory(2, (TimelineSwitch(1, 0x4000000),))
CLEAN_PAST_SWITCH = DiskPosition("shut down", 1, 0x5000000, shutdown_checkpoint=True)


def cluster(
    leader: str | None = "a", *members: Member, token: int = 7, **kw: object
) -> ClusterState:
    ms = members or (member("a", Role.PRIMARY), member("b"), member("c"))
    kw.setdefault("history", TimelineHistory(1))
    return ClusterState(
        initialized=True,
        leader=LeaderKey(leader, token) if leader else None,
        members={m.name: m for m in ms},
        **kw,  # type: ignore[arg-type]
    )


def view(
    name: str,
    local: LocalState,
    c: ClusterState | None,
    held: bool = False,
    policy: Policy | None = None,
) -> View:
    lease = Lease(held=True, token=7, valid_for=3.0) if held else Lease()
    return View(name=name, local=local, lease=lease, cluster=c, policy=policy or Policy())


# -- the healthy cluster ------------------------------------------------------------------


def test_healthy_primary_renews_its_lease() -> None:
    d = decide(view("a", primary(), cluster("a"), held=True))
    assert d.action is Action.RENEW
    assert "token 7" in d.reason and "0/6400000" in d.reason


def test_streaming_replica_does_nothing() -> None:
    d = decide(view("b", replica(), cluster("a")))
    assert d.action is Action.NOTHING
    assert "streaming from a" in d.reason


def test_every_decision_has_one_sentence() -> None:
    d = decide(view("b", replica(), cluster("a")))
    assert str(d) == d.reason and "\n" not in d.reason and d.reason


# -- primary dead: failover -------------------------------------------------------------


def test_primary_dead_best_replica_takes_the_lease() -> None:
    c = cluster(None, member("b", pos=90 * MB), member("c", pos=80 * MB))
    d = decide(view("b", replica(90 * MB), c))
    assert d.action is Action.ACQUIRE
    assert "most recent WAL" in d.reason


def test_two_replicas_the_one_behind_stands_aside() -> None:
    c = cluster(None, member("b", pos=90 * MB), member("c", pos=80 * MB))
    d = decide(view("c", replica(80 * MB), c))
    assert d.action is Action.WAIT
    assert "b has more recent WAL" in d.reason


def test_equal_positions_both_race_and_the_lease_decides() -> None:
    c = cluster(None, member("b", pos=90 * MB), member("c", pos=90 * MB))
    assert decide(view("b", replica(90 * MB), c)).action is Action.ACQUIRE
    assert decide(view("c", replica(90 * MB), c)).action is Action.ACQUIRE


def test_unreachable_member_ahead_does_not_block_failover() -> None:
    c = cluster(None, member("b", pos=90 * MB), member("c", pos=95 * MB, reachable=False))
    assert decide(view("b", replica(90 * MB), c)).action is Action.ACQUIRE


def test_stopped_member_ahead_does_not_block_failover() -> None:
    stopped = Member("c", role=None, running=False, wal_position=95 * MB)
    c = cluster(None, member("b", pos=90 * MB), stopped)
    assert decide(view("b", replica(90 * MB), c)).action is Action.ACQUIRE


def test_winner_promotes() -> None:
    c = cluster("b", member("b", pos=90 * MB), member("c", pos=80 * MB))
    d = decide(view("b", replica(90 * MB), c, held=True))
    assert d.action is Action.PROMOTE


def test_others_follow_the_new_leader() -> None:
    c = cluster("b", member("b", Role.PRIMARY), member("c"))
    d = decide(view("c", replica(following="a"), c))
    assert d.action is Action.FOLLOW and d.target == "b"
    assert "was a" in d.reason


# -- lagging replicas --------------------------------------------------------------------


def test_lagging_replica_is_not_eligible() -> None:
    c = cluster(None, member("b", pos=80 * MB), leader_wal_position=100 * MB)
    d = decide(view("b", replica(80 * MB), c, policy=Policy(maximum_lag_on_failover=MB)))
    assert d.action is Action.WAIT
    assert "maximum_lag_on_failover" in d.reason


def test_ineligible_replica_ahead_does_not_block_an_eligible_one() -> None:
    # c is ahead of b but is not synchronous: b must not stand aside for it.
    c = cluster(
        None,
        member("b", pos=100 * MB - 10),
        member("c", pos=100 * MB - 5),
        leader_wal_position=100 * MB,
        sync=SyncState("a", frozenset({"b"})),
    )
    d = decide(view("b", replica(100 * MB - 10), c, policy=Policy(synchronous=True)))
    assert d.action is Action.ACQUIRE


def test_lag_within_bound_is_eligible() -> None:
    c = cluster(None, member("b", pos=100 * MB - 1000), leader_wal_position=100 * MB)
    assert decide(view("b", replica(100 * MB - 1000), c)).action is Action.ACQUIRE


def test_unknown_position_with_known_leader_position_is_not_eligible() -> None:
    c = cluster(None, member("b", pos=0), leader_wal_position=100 * MB)
    local = dataclasses.replace(replica(), wal_position=None)
    assert decide(view("b", local, c)).action is Action.WAIT


# -- synchronous mode --------------------------------------------------------------------


def test_synchronous_only_the_sync_replica_may_be_promoted() -> None:
    sync = SyncState("a", frozenset({"c"}))
    c = cluster(None, member("b", pos=95 * MB), member("c", pos=90 * MB), sync=sync)
    policy = Policy(synchronous=True)
    # b is ahead (asynchronous WAL it received), but only c holds every acknowledged commit.
    d_b = decide(view("b", replica(95 * MB), c, policy=policy))
    assert d_b.action is Action.WAIT and "not a known synchronous replica" in d_b.reason
    d_c = decide(view("c", replica(90 * MB), c, policy=policy))
    assert d_c.action is Action.ACQUIRE


def test_synchronous_degraded_allows_the_best_replica() -> None:
    c = cluster(None, member("b", pos=95 * MB), member("c", pos=90 * MB))
    d = decide(view("b", replica(95 * MB), c, policy=Policy(synchronous=True)))
    assert d.action is Action.ACQUIRE


def test_strict_synchronous_without_sync_replica_promotes_nobody() -> None:
    c = cluster(None, member("b", pos=95 * MB))
    d = decide(view("b", replica(95 * MB), c, policy=Policy(synchronous=True, strict=True)))
    assert d.action is Action.WAIT and "strict" in d.reason


# -- losing the lease: fail closed -------------------------------------------------------


def test_primary_that_lost_its_lease_demotes() -> None:
    d = decide(view("a", primary(), cluster(None)))
    assert d.action is Action.DEMOTE


def test_primary_seeing_another_leader_demotes() -> None:
    c = cluster("b", member("a", Role.PRIMARY), member("b", Role.PRIMARY))
    d = decide(view("a", primary(), c))
    assert d.action is Action.DEMOTE and "b holds the leader lease" in d.reason


def test_election_says_held_but_key_names_another_demotes() -> None:
    d = decide(view("a", primary(), cluster("b"), held=True))
    assert d.action is Action.DEMOTE


def test_paused_primary_with_another_leader_still_demotes() -> None:
    c = cluster("b", paused=True)
    assert decide(view("a", primary(), c)).action is Action.DEMOTE


# -- etcd unreachable --------------------------------------------------------------------


def test_etcd_unreachable_primary_keeps_writes_while_lease_is_valid() -> None:
    d = decide(view("a", primary(), None, held=True))
    assert d.action is Action.NOTHING and "valid for 3.0s" in d.reason


def test_etcd_unreachable_and_lease_lost_demotes() -> None:
    d = decide(view("a", primary(), None, held=False))
    assert d.action is Action.DEMOTE


def test_etcd_unreachable_replica_stays_replica() -> None:
    assert decide(view("b", replica(), None)).action is Action.NOTHING


def test_etcd_unreachable_stopped_member_stays_stopped() -> None:
    d = decide(view("b", LocalState(has_data=True), None))
    assert d.action is Action.WAIT


# -- the old primary returning -----------------------------------------------------------


def test_old_primary_returning_is_rewound_not_started() -> None:
    # Shut down cleanly on timeline 1 at 0/5000000; the leader left timeline 1 earlier.
    local = LocalState(has_data=True, was_primary=True, disk=CLEAN_PAST_SWITCH)
    c = cluster("b", member("b", Role.PRIMARY, tl=2), history=HISTORY_2)
    d = decide(view("a", local, c))
    assert d.action is Action.REWIND and d.target == "b"
    assert "past the leader's switch point 0/4000000" in d.reason


def test_old_primary_rewind_failed_without_permission_waits() -> None:
    local = LocalState(has_data=True, rewind_failed=True, disk=CLEAN_PAST_SWITCH)
    c = cluster("b", member("b", Role.PRIMARY, tl=2), history=HISTORY_2)
    d = decide(view("a", local, c))
    assert d.action is Action.WAIT and "allow_reclone" in d.reason and d.failed


def test_old_primary_rewind_failed_with_permission_reclones() -> None:
    local = LocalState(has_data=True, rewind_failed=True, disk=CLEAN_PAST_SWITCH)
    c = cluster("b", member("b", Role.PRIMARY, tl=2), history=HISTORY_2)
    d = decide(view("a", local, c, policy=Policy(allow_reclone=True)))
    assert d.action is Action.RECLONE and d.target == "b"


def test_old_primary_returning_running_as_primary_demotes() -> None:
    # e.g. woke from SIGSTOP after the ttl: it must stop accepting writes at once.
    c = cluster("b", member("b", Role.PRIMARY), token=9)
    d = decide(view("a", primary(), c))
    assert d.action is Action.DEMOTE and "token 9" in d.reason


def test_replica_stuck_on_old_timeline_is_rewound() -> None:
    local = dataclasses.replace(
        replica(following="b", streaming=False), not_streaming_for=30.0, timeline=1
    )
    c = cluster("b", Member("b", Role.PRIMARY, running=True, timeline=2), history=HISTORY_2)
    d = decide(view("c", local, c))
    assert d.action is Action.REWIND


def test_replica_briefly_not_streaming_waits() -> None:
    local = dataclasses.replace(replica(following="b", streaming=False), not_streaming_for=1.0)
    c = cluster("b", Member("b", Role.PRIMARY, running=True, timeline=2), history=HISTORY_2)
    assert decide(view("c", local, c)).action is Action.NOTHING


# -- paused mode -------------------------------------------------------------------------


def test_paused_no_automatic_failover() -> None:
    c = cluster(None, member("b", pos=90 * MB), paused=True)
    d = decide(view("b", replica(90 * MB), c))
    assert d.action is Action.NOTHING and "paused" in d.reason


def test_paused_no_bootstrap() -> None:
    c = ClusterState(initialized=False, paused=True)
    assert decide(view("a", LocalState(has_data=False), c)).action is Action.WAIT


# -- bootstrap, clone, start -------------------------------------------------------------


def test_new_cluster_races_for_bootstrap() -> None:
    c = ClusterState(initialized=False)
    assert decide(view("a", LocalState(has_data=False), c)).action is Action.ACQUIRE


def test_lease_holder_of_new_cluster_bootstraps() -> None:
    c = ClusterState(initialized=False, leader=LeaderKey("a", 7))
    d = decide(view("a", LocalState(has_data=False), c, held=True))
    assert d.action is Action.BOOTSTRAP


def test_a_clone_only_member_never_bootstraps_and_clones_the_restored_primary() -> None:
    """`restore --as-cluster --host` marks the members of other machines clone-only: the
    restored primary may start after them, and they must not initdb in the meantime."""
    local = LocalState(has_data=False, may_bootstrap=False)
    d = decide(view("b", local, ClusterState(initialized=False)))
    assert d.action is Action.WAIT and "clone-only" in d.reason
    c = ClusterState(initialized=False, leader=LeaderKey("b", 7))
    assert decide(view("b", local, c, held=True)).action is Action.RELEASE
    assert decide(view("b", local, cluster("a"))).action is Action.CLONE


def test_lease_holder_without_data_in_an_existing_cluster_releases() -> None:
    d = decide(view("a", LocalState(has_data=False), cluster("a"), held=True))
    assert d.action is Action.RELEASE


def test_empty_member_clones_from_running_leader() -> None:
    d = decide(view("b", LocalState(has_data=False), cluster("a")))
    assert d.action is Action.CLONE and d.target == "a"


def test_empty_member_waits_for_leader_to_run() -> None:
    c = cluster("a", Member("a", Role.PRIMARY, running=False))
    assert decide(view("b", LocalState(has_data=False), c)).action is Action.WAIT


def test_empty_member_without_leader_waits() -> None:
    assert decide(view("b", LocalState(has_data=False), cluster(None))).action is Action.WAIT


def test_stopped_replica_starts_following_leader() -> None:
    d = decide(view("b", LocalState(has_data=True), cluster("a")))
    assert d.action is Action.START_REPLICA and d.target == "a"


def test_stopped_member_without_leader_starts_read_only() -> None:
    local = LocalState(has_data=True, was_primary=True)
    d = decide(view("a", local, cluster(None)))
    assert d.action is Action.START_REPLICA and d.target is None


def test_leader_with_stopped_postgres_restarts_it_as_primary() -> None:
    local = LocalState(has_data=True, was_primary=True)
    d = decide(view("a", local, cluster("a"), held=True))
    assert d.action is Action.START_PRIMARY


def test_leader_that_keeps_failing_to_start_releases() -> None:
    local = LocalState(has_data=True, was_primary=True, start_failures=3)
    d = decide(view("a", local, cluster("a"), held=True))
    assert d.action is Action.RELEASE


# -- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0/0", "0/3000148", "1A/FF000000", "FFFFFFFF/FFFFFFFF"])
def test_lsn_round_trip(text: str) -> None:
    assert format_lsn(parse_lsn(text)) == text


def test_unknown_lsn() -> None:
    assert format_lsn(None) == "?"


def test_replica_that_keeps_failing_to_start_is_rewound() -> None:
    local = LocalState(has_data=True, replica_start_failures=3)
    d = decide(view("c", local, cluster("b", member("b", Role.PRIMARY))))
    assert d.action is Action.REWIND and d.target == "b"
    assert "failed to start as a replica 3 times" in d.reason


def test_replica_start_failure_below_bound_retries_start() -> None:
    local = LocalState(has_data=True, replica_start_failures=1)
    d = decide(view("c", local, cluster("b", member("b", Role.PRIMARY))))
    assert d.action is Action.START_REPLICA


# -- switchover and manual failover ----------------------------------------------------


def test_switchover_hands_over_to_the_best_replica() -> None:
    c = cluster(
        "a",
        member("a", Role.PRIMARY),
        member("b", pos=90 * MB),
        member("c", pos=95 * MB),
        switchover=Switchover("a", None),
    )
    d = decide(view("a", primary(), c, held=True))
    assert d.action is Action.SWITCHOVER and d.target == "c"


def test_switchover_to_a_named_replica() -> None:
    c = cluster("a", switchover=Switchover("a", "b"))
    d = decide(view("a", primary(), c, held=True))
    assert d.action is Action.SWITCHOVER and d.target == "b"


def test_switchover_in_synchronous_mode_only_to_a_synchronous_replica() -> None:
    c = cluster("a", switchover=Switchover("a", "c"), sync=SyncState("a", frozenset({"b"})))
    d = decide(view("a", primary(), c, held=True, policy=Policy(synchronous=True)))
    assert d.action is Action.RENEW and "not a known synchronous replica" in d.reason


def test_switchover_for_another_leader_is_ignored() -> None:
    c = cluster("a", switchover=Switchover("x", "b"))
    assert decide(view("a", primary(), c, held=True)).action is Action.RENEW


def test_only_the_candidate_takes_the_lease_after_a_switchover() -> None:
    members = (member("a"), member("b", pos=100 * MB), member("c", pos=200 * MB))
    c = cluster(None, *members, switchover=Switchover("a", "b"))
    assert decide(view("b", replica(following="a"), c)).action is Action.ACQUIRE
    d = decide(view("c", replica(pos=200 * MB, following="a"), c))
    assert d.action is Action.WAIT and "requested candidate" in d.reason


def test_manual_failover_works_while_paused() -> None:
    c = cluster(None, member("b"), member("c"), paused=True, switchover=Switchover(None, "c"))
    assert decide(view("c", replica(following="a"), c)).action is Action.ACQUIRE
    assert decide(view("b", replica(following="a"), c)).action is Action.WAIT


# -- a data directory of another cluster ----------------------------------------------


def test_foreign_data_directory_is_never_followed() -> None:
    local = LocalState(has_data=True, system_id="111", was_primary=True)
    c = dataclasses.replace(cluster("b", member("b", Role.PRIMARY)), system_id="222")
    d = decide(view("a", local, c))
    assert d.action is Action.WAIT and "another cluster" in d.reason
    d = decide(view("a", local, c, policy=Policy(allow_reclone=True)))
    assert d.action is Action.RECLONE and d.target == "b"


def test_running_foreign_server_is_stopped() -> None:
    local = dataclasses.replace(replica(), system_id="111")
    c = dataclasses.replace(cluster("b", member("b", Role.PRIMARY)), system_id="222")
    assert decide(view("a", local, c)).action is Action.DEMOTE


def test_same_or_unknown_system_is_fine() -> None:
    local = dataclasses.replace(replica(following="b"), system_id="222")
    c = dataclasses.replace(cluster("b", member("b", Role.PRIMARY)), system_id="222")
    assert decide(view("a", local, c)).action is Action.NOTHING
    c = dataclasses.replace(c, system_id=None)
    assert decide(view("a", local, c)).action is Action.NOTHING


def test_leader_whose_postgres_does_not_answer_gives_the_lease_up() -> None:
    # It runs but refuses its own agent (e.g. pg_hba): a leader that cannot serve.
    silent = LocalState(has_data=True, running=True, unanswered_for=1.2)
    d = decide(view("a", silent, cluster("a"), held=True, policy=Policy(unanswered_bound=1.0)))
    assert d.action is Action.DEMOTE and "has not answered me for 1.2s" in d.reason
    brief = LocalState(has_data=True, running=True, unanswered_for=0.3)
    d = decide(view("a", brief, cluster("a"), held=True, policy=Policy(unanswered_bound=1.0)))
    assert d.action is Action.WAIT


def test_follower_whose_postgres_stopped_answering_is_stopped_after_a_bound() -> None:
    # e.g. an immediate stop that hangs after a freeze: it must not stay half alive.
    silent = LocalState(has_data=True, running=True, unanswered_for=12.0)
    d = decide(view("b", silent, cluster("a")))
    assert d.action is Action.DEMOTE and "has not answered me for 12s" in d.reason
    brief = LocalState(has_data=True, running=True, unanswered_for=1.0)
    assert decide(view("b", brief, cluster("a"))).action is Action.WAIT
