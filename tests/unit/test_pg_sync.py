"""Synchronous standby management: the record never lists a replica lacking a commit."""

from __future__ import annotations

from spofless.pg import Policy, SyncState
from spofless.pg.sync import NO_STANDBY, StandbyRow, plan_sync, standby_names

SYNC = Policy(synchronous=True)
STRICT = Policy(synchronous=True, strict=True)


def row(name: str, flush: int = 100, sync: str = "async", state: str = "streaming") -> StandbyRow:
    return StandbyRow(name, state, sync, flush)


def test_asynchronous_mode_clears_everything() -> None:
    plan = plan_sync("a", Policy(), SyncState("a", frozenset({"b"})), [row("b")], 100)
    assert plan.standby_names == "" and plan.record == SyncState("a")


def test_healthy_sync_standby_is_kept() -> None:
    current = SyncState("a", frozenset({"b"}))
    plan = plan_sync("a", SYNC, current, [row("b", sync="sync"), row("c", 200)], 200)
    assert plan.standby_names == standby_names("b") and plan.record is None


def test_new_leader_takes_over_the_record() -> None:
    plan = plan_sync("c", SYNC, SyncState("a", frozenset({"b"})), [row("b", sync="sync")], 1)
    assert plan.record == SyncState("c", frozenset({"b"}))


def test_choosing_a_standby_empties_members_before_the_guc_changes() -> None:
    current = SyncState("a", frozenset({"b"}))  # b is gone
    plan = plan_sync("a", SYNC, current, [row("c", 90), row("d", 95)], 100)
    assert plan.standby_names == standby_names("d")
    assert plan.record == SyncState("a", frozenset(), pending="d")


def test_pending_standby_joins_only_after_flushing_past_the_switch_point() -> None:
    pending = SyncState("a", frozenset(), pending="d")
    step2 = plan_sync("a", SYNC, pending, [row("d", 95, sync="sync")], 120)
    assert step2.record == SyncState("a", frozenset(), "d", 120)
    behind = plan_sync("a", SYNC, step2.record, [row("d", 110, sync="sync")], 130)
    assert behind.record is None and "catching up" in behind.reason
    done = plan_sync("a", SYNC, step2.record, [row("d", 120, sync="sync")], 130)
    assert done.record == SyncState("a", frozenset({"d"}))


def test_pending_standby_not_yet_sync_waits() -> None:
    pending = SyncState("a", frozenset(), pending="d")
    plan = plan_sync("a", SYNC, pending, [row("d", 95, sync="async")], 120)
    assert plan.record is None and plan.standby_names == standby_names("d")


def test_no_standby_degrades_loudly() -> None:
    plan = plan_sync("a", SYNC, SyncState("a", frozenset({"b"})), [], 100)
    assert plan.degraded and plan.standby_names == ""
    assert plan.record == SyncState("a") and "DEGRADED" in plan.reason


def test_strict_keeps_waiting_for_the_last_sync_standby() -> None:
    current = SyncState("a", frozenset({"b"}))
    plan = plan_sync("a", STRICT, current, [row("b", state="catchup")], 100)
    assert plan.standby_names == standby_names("b") and not plan.degraded
    assert plan.record is None


def test_strict_without_any_standby_blocks_writes() -> None:
    plan = plan_sync("a", STRICT, SyncState("a"), [], 100)
    assert plan.standby_names == standby_names(NO_STANDBY)


def test_names_are_quoted() -> None:
    assert standby_names("pg-1") == 'FIRST 1 ("pg-1")'
