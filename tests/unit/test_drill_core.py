"""The drill library's pure parts: the seeded schedule and the set checker."""

from __future__ import annotations

import pytest

from spofless.drill import FAULT_KINDS, FaultKind, check_data, draw_schedule


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert draw_schedule(7, 20) == draw_schedule(7, 20)
    assert draw_schedule(7, 20) != draw_schedule(8, 20)


def test_a_schedule_covers_every_kind_when_long_enough() -> None:
    faults = draw_schedule(3, 25)
    assert len(faults) == 25 and [f.index for f in faults] == list(range(25))
    assert {f.kind for f in faults} == set(FAULT_KINDS)
    for f in faults:
        paused = f.kind in (FaultKind.NODE_PAUSE, FaultKind.AGENT_PAUSE)
        paused |= f.kind is FaultKind.ETCD_LEADER_PAUSE
        assert (4.0 <= f.pause_for <= 8.0) if paused else f.pause_for == 0.0


def test_a_schedule_of_chosen_kinds() -> None:
    faults = draw_schedule(1, 5, [FaultKind.SWITCHOVER])
    assert {f.kind for f in faults} == {FaultKind.SWITCHOVER}
    assert "switchover" in str(faults[0])
    with pytest.raises(ValueError):
        draw_schedule(1, 5, [])


def test_checker_finds_lost_phantom_and_divergent() -> None:
    members = {"a": {1, 2, 3, 99}, "b": {1, 2, 3, 99}, "c": {1, 2}}
    v = check_data(
        attempted=[1, 2, 3, 4, 5],
        acknowledged=[1, 2, 4],
        uncertain=[5],
        primary="a",
        members=members,
    )
    assert v.lost == [4] and v.phantom == [99] and list(v.divergent) == ["c"]
    assert not v.ok and "1 lost" in str(v) and "c: 2 of the primary's rows missing" in str(v)


def test_checker_accepts_uncertain_writes_either_way() -> None:
    members = {"a": {1, 3}, "b": {1, 3}}
    v = check_data([1, 2, 3], [1], [2, 3], "a", members)
    assert v.ok and v.acknowledged == 1 and v.uncertain == 2
