"""Pure planning: backup choice, WAL across timeline switches, expiry (property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spofless.backup._errors import TargetError
from spofless.backup.plan import (
    WAL_SEGMENT_SIZE,
    BackupInfo,
    Segment,
    Switch,
    Target,
    available_segments,
    choose_backup,
    format_lsn,
    needed_segments,
    parse_history,
    parse_lsn,
    parse_segment,
    plan_expiry,
    timeline_path,
    unreachable_segments,
)

SEG = WAL_SEGMENT_SIZE


def test_lsn_and_segment_names_round_trip() -> None:
    assert parse_lsn("0/3000028") == 0x3000028
    assert format_lsn(parse_lsn("1A/FF000000")) == "1A/FF000000"
    seg = parse_segment("00000002000000010000003F")
    assert seg == Segment(2, 0x100 + 0x3F)
    assert seg.name() == "00000002000000010000003F"
    assert parse_segment("00000002.history") is None
    assert parse_segment("000000010000000000000003.partial") is None
    with pytest.raises(ValueError):
        parse_lsn("3000028")


def test_history_file_and_path() -> None:
    text = "1\t0/5000090\tno recovery target specified\n\n2\t0/9000000\tbefore 2026\n"
    hist = parse_history(text)
    assert hist == (Switch(1, 0x5000090), Switch(2, 0x9000000))
    path = timeline_path(3, {3: hist})
    assert [(s.timeline, s.begin, s.end) for s in path] == [
        (1, 0, 0x5000090),
        (2, 0x5000090, 0x9000000),
        (3, 0x9000000, None),
    ]
    with pytest.raises(TargetError, match="timeline 4 has no history"):
        timeline_path(4, {3: hist})


def test_segments_across_a_switch_read_the_switch_segment_from_the_new_timeline() -> None:
    # Timeline 1 ended at 0/5000090 (inside segment 5); timeline 2 began there.
    hist = {2: (Switch(1, 5 * SEG + 0x90),)}
    path = timeline_path(2, hist)
    segs = needed_segments(3 * SEG, 7 * SEG + 10, path)
    assert segs == [Segment(1, 3), Segment(1, 4), Segment(2, 5), Segment(2, 6), Segment(2, 7)]
    archived = {Segment(1, 3), Segment(1, 4), Segment(1, 5), Segment(2, 5), Segment(2, 7)}
    # Segment 2/6 is missing: replay can read through 2/5 only.
    assert available_segments(3 * SEG, path, archived) == [
        Segment(1, 3),
        Segment(1, 4),
        Segment(2, 5),
    ]


def test_a_gap_makes_later_segments_unreachable() -> None:
    hist = {2: (Switch(1, 5 * SEG + 0x90),)}
    path = timeline_path(2, hist)
    archived = {Segment(1, n) for n in range(3, 6)} | {Segment(2, 5), Segment(2, 7), Segment(2, 8)}
    missing, beyond = unreachable_segments(3 * SEG, path, archived)
    assert missing == Segment(2, 6)
    assert beyond == [Segment(2, 7), Segment(2, 8)]
    assert unreachable_segments(3 * SEG, path, archived | {Segment(2, 6)}) == (None, [])
    # Segments of an abandoned timeline are not on the path: no gap because of them.
    assert unreachable_segments(
        3 * SEG, timeline_path(1, hist), {Segment(1, 3), Segment(2, 9)}
    ) == (
        None,
        [],
    )


def _b(
    label: str,
    tli: int,
    start: int,
    stop: int,
    t: float,
    kind: str = "full",
    parent: str | None = None,
) -> BackupInfo:
    return BackupInfo(label, kind, parent, tli, start * SEG, stop * SEG + 100, t - 1, t)  # type: ignore[arg-type]


def test_choose_backup_for_each_target_kind() -> None:
    a = _b("a", 1, 2, 2, 100.0)
    b = _b("b", 1, 6, 6, 200.0)
    c = _b("c", 2, 9, 9, 300.0, "incremental", "b")
    hist = {2: (Switch(1, 8 * SEG),)}
    backups = [a, b, c]
    assert choose_backup(backups, Target("latest"), hist) == c
    assert choose_backup(backups, Target("time", time=250.0), hist) == b
    assert choose_backup(backups, Target("time", time=100.0), hist) == a
    assert choose_backup(backups, Target("lsn", lsn=7 * SEG), hist) == b
    # On timeline 1 only a and b serve (c lies on timeline 2).
    assert choose_backup(backups, Target("latest", timeline=1), hist) == b
    with pytest.raises(TargetError, match="before the end of the oldest backup"):
        choose_backup(backups, Target("time", time=50.0), hist)
    with pytest.raises(TargetError, match="no backup"):
        choose_backup([], Target("latest"), hist)


def test_a_backup_that_ended_after_its_timeline_forked_does_not_serve_the_new_one() -> None:
    late = _b("late", 1, 4, 9, 100.0)  # ended at segment 9, but timeline 2 forked at 8
    hist = {2: (Switch(1, 8 * SEG),)}
    with pytest.raises(TargetError):
        choose_backup([late], Target("latest", timeline=2), hist)
    assert choose_backup([late], Target("latest", timeline=1), hist) == late


def test_expiry_keeps_full_count_and_their_incrementals() -> None:
    bs = [
        _b("f1", 1, 1, 1, 10),
        _b("i1", 1, 3, 3, 20, "incremental", "f1"),
        _b("f2", 1, 5, 5, 30),
        _b("i2", 1, 7, 7, 40, "incremental", "f2"),
        _b("f3", 1, 9, 9, 50),
    ]
    wal = {Segment(1, n) for n in range(0, 12)}
    plan = plan_expiry(bs, wal, full=2, window=0, now=60)
    assert plan.keep == ("f2", "i2", "f3")
    assert plan.expire == ("f1", "i1")
    assert plan.expire_wal == tuple(Segment(1, n) for n in range(0, 5))
    # A window reaching back to t=25 also keeps i1 (ended before it), hence f1.
    plan = plan_expiry(bs, wal, full=1, window=35, now=60)
    assert plan.keep == ("f1", "i1", "f2", "i2", "f3")


# -- the property: expiry never deletes what a retained backup needs ---------------


@st.composite
def histories(
    draw: st.DrawFn,
) -> tuple[list[BackupInfo], set[Segment], dict[int, tuple[Switch, ...]], float]:
    """A cluster's life: WAL grows, backups are taken, failovers switch timelines."""
    tli, segno, t = 1, 0, 0.0
    path: list[Switch] = []
    hist: dict[int, tuple[Switch, ...]] = {}
    wal: set[Segment] = set()
    backups: list[BackupInfo] = []
    for step in range(draw(st.integers(1, 25))):
        action = draw(st.sampled_from(["wal", "wal", "full", "incr", "failover"]))
        t += draw(st.floats(1, 100))
        if action == "wal":
            for _ in range(draw(st.integers(1, 4))):
                wal.add(Segment(tli, segno))
                segno += 1
        elif action == "failover":
            switch = segno * SEG + draw(st.integers(0, SEG - 1))
            wal.add(Segment(tli, segno))  # the old timeline's partial last segment
            path.append(Switch(tli, switch))
            tli += 1
            hist[tli] = tuple(path)
            wal.add(Segment(tli, segno))  # the new timeline's copy of the switch segment
            segno += 1
        else:
            span = draw(st.integers(0, 2))
            start = segno
            for _ in range(span + 1):
                wal.add(Segment(tli, segno))
                segno += 1
            segno -= 1
            parent = backups[-1].label if action == "incr" and backups else None
            kind = "incremental" if parent else "full"
            backups.append(
                BackupInfo(
                    f"b{step}", kind, parent, tli, start * SEG + 40, segno * SEG + 80, t - 0.5, t
                )
            )
            segno += 1
    return backups, wal, hist, t


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(1, 4), st.floats(0, 800), st.floats(0, 200))
def test_expiry_never_deletes_what_a_retained_backup_needs(
    life: tuple[list[BackupInfo], set[Segment], dict[int, tuple[Switch, ...]], float],
    full: int,
    window: float,
    later: float,
) -> None:
    backups, wal, hist, now = life
    now += later
    plan = plan_expiry(backups, wal, full=full, window=window, now=now)
    kept = [b for b in backups if b.label in plan.keep]
    left = wal - set(plan.expire_wal)
    labels = {b.label for b in kept}
    assert set(plan.keep) | set(plan.expire) == {b.label for b in backups}
    if backups:
        assert max(backups, key=lambda b: b.stop_time).label in labels
    fulls = [b for b in backups if b.kind == "full"]
    assert {b.label for b in fulls[-full:]} <= labels
    for b in kept:
        # Its chain is kept...
        assert b.parent is None or b.parent in labels
        # ...and every segment it needs, to its end and onwards, on every timeline.
        for tli in {b.timeline, *hist}:
            try:
                path = timeline_path(tli, hist)
            except TargetError:
                continue
            if not any(s.timeline == b.timeline for s in path):
                continue
            assert available_segments(b.start_lsn, path, left) == available_segments(
                b.start_lsn, path, wal
            )
    # Every moment of the window that was restorable still is, from a kept backup.
    if window > 0:
        for b in backups:
            if b.stop_time >= now - window:
                moment = b.stop_time
                before = choose_backup(
                    backups, Target("time", time=moment, timeline=b.timeline), hist
                )
                after = choose_backup(kept, Target("time", time=moment, timeline=b.timeline), hist)
                assert after.label == before.label
