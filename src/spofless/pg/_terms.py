"""What each primary term leaves in etcd for the next: its timeline history and the
WAL it wrote while synchronous mode was degraded. Pure.

    P/history    {"timeline": N, "switches": [[timeline, lsn], ...]}  (the leader's)
    P/degraded   [{"timeline", "leader", "start", "end"}, ...]        (newest last)
    P/lost       [{"timeline", "start", "end", "open"}, ...]           (newest last)

A degraded range is opened, in the same fenced transaction that records the
synchronous state, *before* the leader lets commits be acknowledged without a
synchronous standby; it starts at the last position a synchronous standby was
known to have flushed (everything before is on it), and is closed at a position
read after commits wait for a standby again. So every commit acknowledged while
degraded lies inside a recorded range (spofless.pg.rejoin uses them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from spofless.pg.view import DegradedRange, LostRange, TimelineHistory, TimelineSwitch

KEEP_RANGES = 32  # the newest ranges kept in etcd: older terms' members rejoined long ago


def history_json(h: TimelineHistory) -> str:
    return json.dumps(
        {"timeline": h.timeline, "switches": [[s.timeline, s.lsn] for s in h.switches]}
    )


def parse_history_json(text: str) -> TimelineHistory:
    d = json.loads(text)
    return TimelineHistory(
        int(d["timeline"]), tuple(TimelineSwitch(int(t), int(lsn)) for t, lsn in d["switches"])
    )


def degraded_json(ranges: Sequence[DegradedRange]) -> str:
    return json.dumps(
        [
            {"timeline": r.timeline, "leader": r.leader, "start": r.start, "end": r.end}
            for r in ranges
        ]
    )


def parse_degraded_json(text: str) -> tuple[DegradedRange, ...]:
    items: list[Any] = json.loads(text)
    return tuple(
        DegradedRange(
            int(d["timeline"]),
            str(d["leader"]),
            int(d["start"]),
            int(d["end"]) if d.get("end") is not None else None,
        )
        for d in items
    )


def next_degraded(
    ranges: Sequence[DegradedRange],
    *,
    leader: str,
    timeline: int,
    degraded: bool,
    start: int,
    position: int,
) -> tuple[DegradedRange, ...] | None:
    """The ranges after this leader loop, or None when unchanged.

    `degraded`: commits are about to be (or are) acknowledged with no synchronous
    standby. `start`: the last position a synchronous standby held. `position`: the
    primary's current WAL position (read after the previous loop's setting took effect).
    """
    open_ = [
        i
        for i, r in enumerate(ranges)
        if r.end is None and r.leader == leader and r.timeline == timeline
    ]
    if degraded:
        if open_:
            return None
        return (*ranges, DegradedRange(timeline, leader, start))[-KEEP_RANGES:]
    if not open_:
        return None
    i = open_[-1]
    closed = DegradedRange(timeline, leader, ranges[i].start, max(position, ranges[i].start))
    return (*ranges[:i], closed, *ranges[i + 1 :])


def lost_json(ranges: Sequence[LostRange]) -> str:
    items = [
        {"timeline": r.timeline, "start": r.start, "end": r.end, "open": r.open} for r in ranges
    ]
    return json.dumps(items[-KEEP_RANGES:])


def parse_lost_json(text: str) -> tuple[LostRange, ...]:
    items: list[Any] = json.loads(text)
    return tuple(
        LostRange(int(d["timeline"]), int(d["start"]), int(d["end"]), bool(d["open"]))
        for d in items
    )
