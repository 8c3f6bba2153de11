"""Rejoining the leader: the divergence rule, degraded ranges and the decisions they drive."""

from __future__ import annotations

import pytest

from spofless.pg import (
    Action,
    ClusterState,
    DegradedRange,
    DiskPosition,
    LeaderKey,
    Lease,
    LocalState,
    Member,
    Policy,
    Role,
    TimelineHistory,
    TimelineSwitch,
    View,
    decide,
    parse_lsn,
)
from spofless.pg._datadir import ControlData, disk_position, parse_controldata
from spofless.pg._terms import (
    degraded_json,
    history_json,
    next_degraded,
    parse_degraded_json,
    parse_history_json,
)
from spofless.pg.rejoin import divergence, parse_history, unsafe_ranges

S5 = parse_lsn("0/51BBB70")  # where the leader left timeline 5 (the issue's run)
H6 = TimelineHistory(6, (TimelineSwitch(4, parse_lsn("0/3000000")), TimelineSwitch(5, S5)))


def test_parse_history_file() -> None:
    text = "1\t0/3000148\tno recovery target specified\n\n2\t0/51BBB70\tno recovery target\n"
    assert parse_history(text) == (
        TimelineSwitch(1, parse_lsn("0/3000148")),
        TimelineSwitch(2, S5),
    )
    with pytest.raises(ValueError, match="not a timeline history line"):
        parse_history("garbage\n")


def test_history_and_degraded_json_round_trip() -> None:
    assert parse_history_json(history_json(H6)) == H6
    ranges = (DegradedRange(5, "db-0", 10, 20), DegradedRange(6, "db-1", 30))
    assert parse_degraded_json(degraded_json(ranges)) == ranges


# -- the divergence rule -------------------------------------------------------------------


def test_same_timeline_follows() -> None:
    assert divergence(6, parse_lsn("9/0"), H6) is None


def test_ancestor_timeline_before_the_switch_follows() -> None:
    assert divergence(5, S5, H6) is None  # replayed exactly to the switch point
    assert divergence(4, parse_lsn("0/2000000"), H6) is None


def test_the_issues_old_primary_has_diverged() -> None:
    # It had 0/51BBBE8 on timeline 5; the new primary forked at 0/51BBB70.
    div = divergence(5, parse_lsn("0/51BBBE8"), H6)
    assert div is not None and div.switchpoint == S5
    assert "0/51BBBE8 on timeline 5, past the leader's switch point 0/51BBB70" in str(div)


def test_shutdown_checkpoint_at_the_switch_point_has_diverged() -> None:
    # The checkpoint record starts at S: the leader never received it.
    assert divergence(5, S5, H6, shutdown_checkpoint=True) is not None
    assert divergence(5, S5 - 1, H6, shutdown_checkpoint=True) is None


def test_unknown_or_newer_timeline_has_diverged() -> None:
    assert divergence(3, 1, TimelineHistory(6, (TimelineSwitch(5, S5),))) is not None
    div = divergence(7, 1, H6)
    assert div is not None and div.switchpoint is None and "not in the leader" in str(div)


def _cd(state: str, **kw: object) -> ControlData:
    base: dict[str, object] = dict(
        state=state,
        timeline=5,
        checkpoint_lsn=100,
        min_recovery_lsn=0,
        system_identifier="1",
        min_recovery_timeline=0,
    )
    base.update(kw)
    return ControlData(**base)  # type: ignore[arg-type]


def test_disk_position_by_how_the_directory_stopped() -> None:
    clean = disk_position(_cd("shut down"), backup_label=False)
    assert clean.position == 100 and clean.shutdown_checkpoint
    standby = disk_position(
        _cd("in archive recovery", min_recovery_lsn=300, min_recovery_timeline=6), False
    )
    assert (standby.timeline, standby.position, standby.shutdown_checkpoint) == (6, 300, False)
    fresh_standby = disk_position(_cd("shut down in recovery"), False)
    assert fresh_standby.position == 100
    clone = disk_position(_cd("in production"), backup_label=True)
    assert clone.position == 100
    crashed = disk_position(_cd("in production"), backup_label=False)
    assert crashed.position is None  # crash recovery first


def test_controldata_min_recovery_timeline_is_read() -> None:
    text = (
        "Database cluster state:               in archive recovery\n"
        "Latest checkpoint's TimeLineID:       5\n"
        "Latest checkpoint location:           0/5000060\n"
        "Minimum recovery ending location:     0/51BBBE8\n"
        "Min recovery ending loc's timeline:   5\n"
    )
    cd = parse_controldata(text)
    assert cd.min_recovery_timeline == 5 and cd.min_recovery_lsn == parse_lsn("0/51BBBE8")


def test_degraded_ranges_that_overlap_the_divergent_wal() -> None:
    div = divergence(5, S5 + 500, H6)
    assert div is not None
    before = DegradedRange(5, "a", S5 - 900, S5 - 100)  # replicated: before the switch
    inside = DegradedRange(5, "a", S5 - 100, S5 + 100)
    still_open = DegradedRange(5, "a", S5 + 400)
    other_tl = DegradedRange(4, "a", 0)
    assert unsafe_ranges(div, [before, inside, still_open, other_tl]) == [inside, still_open]


def test_a_degraded_range_opens_once_and_closes_after() -> None:
    opened = next_degraded((), leader="a", timeline=3, degraded=True, start=10, position=50)
    assert opened == (DegradedRange(3, "a", 10),)
    assert (
        next_degraded(opened, leader="a", timeline=3, degraded=True, start=20, position=60) is None
    )
    closed = next_degraded(opened, leader="a", timeline=3, degraded=False, start=0, position=70)
    assert closed == (DegradedRange(3, "a", 10, 70),)
    assert (
        next_degraded(closed, leader="a", timeline=3, degraded=False, start=0, position=80) is None
    )
    # Another leader's open range (it died degraded) stays open.
    other = (DegradedRange(2, "b", 5),)
    assert next_degraded(other, leader="a", timeline=3, degraded=False, start=0, position=1) is None


# -- decisions -------------------------------------------------------------------------------


def _cluster(**kw: object) -> ClusterState:
    members = {
        "b": Member("b", Role.PRIMARY, running=True, timeline=6, wal_position=S5 + 10**6),
        "c": Member("c", Role.REPLICA, running=True, timeline=6, wal_position=S5 + 10**6),
    }
    kw.setdefault("history", H6)
    return ClusterState(initialized=True, leader=LeaderKey("b", 9), members=members, **kw)  # type: ignore[arg-type]


def _decide(local: LocalState, c: ClusterState, policy: Policy | None = None) -> object:
    return decide(View("a", local, Lease(), c, policy or Policy()))


def _stopped(disk: DiskPosition, **kw: object) -> LocalState:
    return LocalState(has_data=True, disk=disk, **kw)  # type: ignore[arg-type]


CRASHED = DiskPosition("in production", 5, None)
DIVERGED = DiskPosition("shut down", 5, S5 + 200, shutdown_checkpoint=True)
BEHIND = DiskPosition("shut down", 5, S5 - 200, shutdown_checkpoint=True)


def test_crashed_primary_is_recovered_before_anything_else() -> None:
    d = decide(View("a", _stopped(CRASHED), Lease(), _cluster()))
    assert d.action is Action.RECOVER and "in production" in d.reason


def test_clean_old_primary_the_leader_has_entirely_starts_as_replica() -> None:
    # A planned switchover: the new leader received the shutdown checkpoint.
    d = decide(View("a", _stopped(BEHIND), Lease(), _cluster()))
    assert d.action is Action.START_REPLICA and d.target == "b"


def test_without_the_leaders_history_a_stopped_member_waits() -> None:
    d = decide(View("a", _stopped(DIVERGED), Lease(), _cluster(history=TimelineHistory(5))))
    assert d.action is Action.WAIT and "timeline history" in d.reason


def test_an_interrupted_rewind_is_finished_first() -> None:
    d = decide(View("a", _stopped(CRASHED, rewinding=True), Lease(), _cluster()))
    assert d.action is Action.REWIND and d.target == "b"


def test_a_rewind_that_failed_here_is_not_retried_forever_but_recloned() -> None:
    # pg_rewind failed (e.g. the WAL before the divergence is gone): its saved files are
    # still there, but running it again would fail again.
    local = _stopped(DIVERGED, rewinding=True, rewind_failed=True)
    d = decide(View("a", local, Lease(), _cluster(), Policy(synchronous=True)))
    assert d.action is Action.RECLONE


def test_divergent_wal_written_degraded_is_kept_out_with_the_range_and_command() -> None:
    c = _cluster(degraded=(DegradedRange(5, "a", S5 - 50),))
    d = decide(View("a", _stopped(DIVERGED), Lease(), c, Policy(synchronous=True)))
    assert d.action is Action.WAIT and d.failed
    assert "0/51BBB70-0/51BBC38 on timeline 5" in d.reason
    assert "spofless pg rejoin FILE --member a --discard" in d.reason


def test_the_operator_may_discard_it() -> None:
    c = _cluster(degraded=(DegradedRange(5, "a", S5 - 50),), discard=frozenset({"a"}))
    d = decide(View("a", _stopped(DIVERGED), Lease(), c, Policy(synchronous=True)))
    assert d.action is Action.REWIND


def test_asynchronous_mode_rewinds_whatever_the_ranges() -> None:
    c = _cluster(degraded=(DegradedRange(5, "a", S5 - 50),))
    assert _decide(_stopped(DIVERGED), c).action is Action.REWIND  # type: ignore[attr-defined]


def test_synchronous_failed_rewind_of_safe_wal_reclones_without_permission() -> None:
    c = _cluster(degraded=(DegradedRange(5, "a", 0, S5 - 10),))  # closed before the switch
    local = _stopped(DIVERGED, rewind_failed=True)
    d = decide(View("a", local, Lease(), c, Policy(synchronous=True)))
    assert d.action is Action.RECLONE and d.target == "b"


def test_asynchronous_failed_rewind_needs_permission_to_reclone() -> None:
    d = decide(View("a", _stopped(DIVERGED, rewind_failed=True), Lease(), _cluster()))
    assert d.action is Action.WAIT and d.failed and "allow_reclone" in d.reason


def test_a_reclone_that_cannot_be_made_says_why() -> None:
    local = _stopped(DIVERGED, rewind_failed=True, reclone_blocked="2 kept already")
    d = decide(View("a", local, Lease(), _cluster(), Policy(synchronous=True)))
    assert d.action is Action.WAIT and d.failed and "2 kept already" in d.reason


def test_running_replica_whose_pages_passed_the_switch_point_is_rewound() -> None:
    local = LocalState(
        has_data=True,
        running=True,
        role=Role.REPLICA,
        timeline=5,
        wal_position=S5 + 200,
        following="b",
        recovery_timeline=5,
        recovery_position=S5 + 72,
    )
    d = decide(View("a", local, Lease(), _cluster()))
    assert d.action is Action.REWIND and "past the leader's switch point" in d.reason


def test_running_replica_on_the_way_to_the_new_timeline_keeps_going() -> None:
    local = LocalState(
        has_data=True,
        running=True,
        role=Role.REPLICA,
        timeline=5,
        wal_position=S5 - 10,
        following="b",
        streaming=True,
        recovery_timeline=5,
        recovery_position=S5 - 100,
    )
    assert decide(View("a", local, Lease(), _cluster())).action is Action.NOTHING


def test_member_on_an_older_timeline_never_takes_over_whatever_its_position() -> None:
    # The diverged old primary, running read-only, has more bytes of WAL than the
    # replica on the newest timeline: it must not win the election.
    members = {
        "a": Member("a", Role.REPLICA, running=True, timeline=5, wal_position=S5 + 10**9),
        "c": Member("c", Role.REPLICA, running=True, timeline=6, wal_position=S5 + 10**6),
    }
    c = ClusterState(initialized=True, members=members, history=H6)
    old = LocalState(
        has_data=True, running=True, role=Role.REPLICA, timeline=5, wal_position=S5 + 10**9
    )
    d = decide(View("a", old, Lease(), c))
    assert d.action is Action.WAIT and "timeline 5, behind the cluster's timeline 6" in d.reason
    new = LocalState(
        has_data=True, running=True, role=Role.REPLICA, timeline=6, wal_position=S5 + 10**6
    )
    assert decide(View("c", new, Lease(), c)).action is Action.ACQUIRE


def test_a_promotion_after_a_degraded_term_reports_what_it_lacks() -> None:
    from spofless.pg._terms import lost_json, parse_lost_json
    from spofless.pg.rejoin import possibly_lost

    open_range = DegradedRange(5, "a", 1000)
    lost = possibly_lost([open_range], timeline=5, position=1500, last_optime=1800)
    assert [str(r) for r in lost] == ["0/5DC-0/708 or beyond on timeline 5"]
    assert parse_lost_json(lost_json(lost)) == tuple(lost)
    # It held all of a closed range: nothing lost.
    assert possibly_lost([DegradedRange(5, "a", 1000, 1400)], 5, 1500, 1800) == []
    # Another timeline's range is not this term's.
    assert possibly_lost([DegradedRange(4, "a", 0)], 5, 1500, 1800) == []


def _ahead_of_history(**kw: object) -> LocalState:
    """A replica of b on timeline 7: b was rewound or promoted onto it and its first
    look has not published timeline 7's history yet (the cluster still says 6)."""
    return LocalState(
        has_data=True,
        running=True,
        role=Role.REPLICA,
        timeline=7,
        wal_position=S5 + 10**6,
        following="b",
        recovery_timeline=7,
        recovery_position=S5 + 10**6,
        **kw,  # type: ignore[arg-type]
    )


def test_a_replica_ahead_of_the_published_history_waits_for_it() -> None:
    # The CI failure: the cascading replica got the leader's new timeline before the
    # leader published it, was "not in the leader's history" and was rewound.
    for local in (_ahead_of_history(streaming=True), _ahead_of_history(not_streaming_for=1)):
        d = decide(View("a", local, Lease(), _cluster()))
        assert d.action is Action.NOTHING and "waiting for it" in d.reason, d


def test_a_replica_ahead_of_the_history_that_does_not_stream_is_rewound_in_the_end() -> None:
    d = decide(View("a", _ahead_of_history(not_streaming_for=30), Lease(), _cluster()))
    assert d.action is Action.REWIND and "not in the leader's history" in d.reason
