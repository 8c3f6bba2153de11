"""Whether a member can follow the leader as it is, or must be rewound first: pure.

The rule (Patroni's, made precise): a member can stream from the leader only when
every WAL record it has applied is in the leader's history. The leader's
timeline history lists, for each ancestor timeline T, the switch point S(T):
the first byte that is *not* on T in the leader's history. A member whose own
position P on timeline T is

- on the leader's timeline: follows (nothing of it can be foreign);
- on an ancestor timeline T with P <= S(T): follows (it replays T up to S(T),
  then the next timeline, as the history says);
- on an ancestor timeline T with P > S(T), on a timeline the leader's history
  does not contain, or on a timeline newer than the leader's: has diverged, and
  is rewound (or re-cloned) before it may start as a replica. Started as it is,
  PostgreSQL would refuse to follow ("requested timeline does not contain minimum
  recovery point"), or stream nothing and look healthy.

P is read from the data directory's control file, by how it was last stopped:

- cleanly shut down as a primary: the shutdown checkpoint is its last record, so
  P is that checkpoint's location, and it has diverged when P >= S(T) (a replica
  that received the checkpoint record has S(T) past its start);
- a standby (stopped or crashed in recovery): the minimum recovery point, the
  end of what its pages may already hold (the checkpoint when that is unset);
  diverged when P > S(T);
- a primary that crashed: unknown. Its WAL may run past its last checkpoint, so
  it is first brought to a clean shutdown by crash recovery (single-user mode),
  which writes a shutdown checkpoint at the end of its WAL; then as above.

A running replica is checked the same way with its received and replayed
positions: once the WAL it holds runs past the switch point it cannot follow.

Discarding divergent WAL (by a rewind or a re-clone) is safe only when no client
saw a commit in it acknowledged. In synchronous mode a commit is acknowledged
only once a synchronous standby (the next leader's only candidates) has it, so
divergent WAL holds no acknowledged commit, except where the primary ran
*degraded* (asynchronously, for want of a standby): the leader records each
degraded range in etcd before it starts acknowledging alone (spofless.pg.sync),
and `unsafe_ranges` finds the ones that overlap the divergence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spofless.pg.view import (
    DegradedRange,
    DiskPosition,
    LostRange,
    TimelineHistory,
    TimelineSwitch,
    format_lsn,
    parse_lsn,
)

__all__ = [
    "Divergence",
    "LostRange",
    "divergence",
    "parse_history",
    "possibly_lost",
    "unsafe_ranges",
]


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where a member's WAL left the leader's history."""

    timeline: int  # the member's timeline
    switchpoint: int | None  # where the leader left that timeline; None: never on it
    position: int  # how far the member's WAL goes on it

    def __str__(self) -> str:
        if self.switchpoint is None:
            return (
                f"my timeline {self.timeline} (at {format_lsn(self.position)}) is not in "
                "the leader's history"
            )
        return (
            f"my WAL reaches {format_lsn(self.position)} on timeline {self.timeline}, past "
            f"the leader's switch point {format_lsn(self.switchpoint)}"
        )


def parse_history(text: str) -> tuple[TimelineSwitch, ...]:
    """A `NNNNNNNN.history` file's lines (`parent<TAB>switchpoint<TAB>reason`).

    Blank lines and comments are skipped; a malformed line raises ValueError.
    """
    out: list[TimelineSwitch] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or "/" not in fields[1]:
            raise ValueError(f"not a timeline history line: {line!r}")
        out.append(TimelineSwitch(int(fields[0]), parse_lsn(fields[1])))
    return tuple(out)


def divergence(
    timeline: int, position: int, history: TimelineHistory, *, shutdown_checkpoint: bool = False
) -> Divergence | None:
    """None when a member at `position` on `timeline` can follow a leader with
    `history`; else where it diverged. `shutdown_checkpoint`: `position` is the start
    of a clean shutdown's checkpoint record (diverged already when it starts at the
    switch point), not the end of what was replayed."""
    if timeline == history.timeline:
        return None
    if timeline > history.timeline:
        return Divergence(timeline, None, position)
    for switch in history.switches:
        if switch.timeline == timeline:
            past = position >= switch.lsn if shutdown_checkpoint else position > switch.lsn
            return Divergence(timeline, switch.lsn, position) if past else None
    return Divergence(timeline, None, position)


def disk_divergence(disk: DiskPosition, history: TimelineHistory) -> Divergence | None:
    """`divergence` of a stopped data directory (whose position is known)."""
    assert disk.timeline is not None and disk.position is not None
    return divergence(
        disk.timeline, disk.position, history, shutdown_checkpoint=disk.shutdown_checkpoint
    )


def unsafe_ranges(div: Divergence, degraded: Iterable[DegradedRange]) -> list[DegradedRange]:
    """The degraded ranges that overlap the divergent WAL: commits acknowledged there
    may exist nowhere else. The divergent WAL runs from the switch point (the start of
    the timeline when the leader never was on it) to the member's position."""
    lo = div.switchpoint if div.switchpoint is not None else 0
    hi = div.position
    out = []
    for r in degraded:
        if r.timeline != div.timeline:
            continue
        end = r.end if r.end is not None else hi
        if r.start <= hi and end > lo:
            out.append(r)
    return out


def possibly_lost(
    degraded: Iterable[DegradedRange], timeline: int, position: int, last_optime: int | None
) -> list[LostRange]:
    """What a member promoted at `position` on `timeline` lacks of that timeline's
    degraded ranges (the best member was chosen; this is what even it does not have)."""
    out = []
    for r in degraded:
        if r.timeline != timeline:
            continue
        end = r.end if r.end is not None else max(last_optime or 0, r.start)
        lo = max(r.start, position)
        if end > lo or (r.end is None and end >= lo):
            out.append(LostRange(timeline, lo, end, open=r.end is None))
    return out
