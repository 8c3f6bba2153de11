"""Pure planning: which base backup serves a target, which WAL it needs, what expires.

No I/O here: every function takes plain data (the backups a repository holds,
the WAL segment names it holds, the parsed timeline history files) and
returns a decision. The repository and restore code act on it.

Timelines
---------
`<tli>.history` lists the ancestors of timeline `tli` and where each ended:
timeline p1 ran from LSN 0 to s1, p2 from s1 to s2, ..., and `tli` from the
last switch point on. PostgreSQL reads segment `segno` from the newest timeline
of that path whose first segment is at or before `segno` (XLogFileReadAnyTLI),
so the segment holding a switch point is read from the *new* timeline and
every earlier one from the old. `needed_segments` follows the same rule.

Choosing a base backup
----------------------
A backup serves a target on timeline T when its timeline is on T's path and
it ended (reached consistency, `stop_lsn`) before T forked off its timeline.
Of those, the newest that ended no later than the target:
`latest`, `immediate`, `name` -> the newest; `time` -> the newest whose
`stop_time` <= target; `lsn` -> the newest whose `stop_lsn` <= target. None
left: `TargetError` naming the oldest possible target.

Retention
---------
Kept: the newest `full` full backups and every incremental built on them; when
`window` > 0, every backup that ended inside the window and the newest one that
ended before it (a restore to the window's first moment starts there); the
newest backup always; and the whole parent chain of anything kept. Expired WAL:
segments (of any timeline) before the first segment of the oldest kept backup.
History files never expire (they are tiny and every later timeline needs
them). So expiry never removes a backup file or segment that a kept backup
needs, for a restore to its end or to any later point: property-tested.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from spofless.backup._errors import TargetError

WAL_SEGMENT_SIZE = 16 * 1024 * 1024  # PostgreSQL's default (initdb --wal-segsize)
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history$")


# -- LSNs, segment and history names ---------------------------------------------


def parse_lsn(text: str) -> int:
    """`0/3000028` -> 50331688."""
    hi, sep, lo = text.strip().partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r} (expected like 0/3000028)")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True, order=True)
class Segment:
    """One WAL segment file: `<timeline><segno high><segno low>`, 24 hex digits."""

    timeline: int
    segno: int

    def name(self, seg_size: int = WAL_SEGMENT_SIZE) -> str:
        per_id = 0x100000000 // seg_size
        return f"{self.timeline:08X}{self.segno // per_id:08X}{self.segno % per_id:08X}"


def parse_segment(name: str, seg_size: int = WAL_SEGMENT_SIZE) -> Segment | None:
    """The segment a WAL file name denotes; None for anything else (history, .partial)."""
    m = _SEGMENT_RE.match(name)
    if not m:
        return None
    per_id = 0x100000000 // seg_size
    return Segment(int(m.group(1), 16), int(m.group(2), 16) * per_id + int(m.group(3), 16))


def segno_of(lsn: int, seg_size: int = WAL_SEGMENT_SIZE) -> int:
    return lsn // seg_size


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


def parse_history_name(name: str) -> int | None:
    m = _HISTORY_RE.match(name)
    return int(m.group(1), 16) if m else None


@dataclass(frozen=True)
class Switch:
    """One line of a history file: `timeline` ended at `lsn`."""

    timeline: int
    lsn: int


def parse_history(text: str) -> tuple[Switch, ...]:
    """The content of a `<tli>.history` file: `<parent tli>\\t<switch lsn>\\t<reason>` lines."""
    out: list[Switch] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        out.append(Switch(int(fields[0]), parse_lsn(fields[1])))
    return tuple(out)


Histories = Mapping[int, Sequence[Switch]]


@dataclass(frozen=True)
class Span:
    """Timeline `timeline` is on a path from `begin` up to `end` (None: open-ended)."""

    timeline: int
    begin: int
    end: int | None


def timeline_path(timeline: int, histories: Histories) -> tuple[Span, ...]:
    """The spans of `timeline` and its ancestors, oldest first."""
    if timeline == 1 or timeline not in histories:
        if timeline != 1 and timeline not in histories:
            raise TargetError(f"timeline {timeline} has no history file in the repository")
        return (Span(1, 0, None),)
    spans: list[Span] = []
    begin = 0
    for sw in histories[timeline]:
        spans.append(Span(sw.timeline, begin, sw.lsn))
        begin = sw.lsn
    spans.append(Span(timeline, begin, None))
    return tuple(spans)


def latest_timeline(histories: Histories, backups: Iterable[BackupInfo] = ()) -> int:
    """The highest timeline known, what recovery_target_timeline='latest' follows."""
    return max([1, *histories.keys(), *(b.timeline for b in backups)])


# -- backups and targets -----------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    """What planning needs of one base backup (its manifest holds more)."""

    label: str
    kind: Literal["full", "incremental"]
    parent: str | None  # the backup an incremental's unchanged files live in
    timeline: int
    start_lsn: int
    stop_lsn: int
    start_time: float  # seconds since the epoch
    stop_time: float


@dataclass(frozen=True)
class Target:
    """Where a restore stops replaying WAL."""

    kind: Literal["latest", "immediate", "time", "lsn", "name"]
    time: float | None = None
    lsn: int | None = None
    name: str | None = None
    timeline: int | None = None  # None: the latest timeline


def serves(backup: BackupInfo, path: Sequence[Span]) -> bool:
    """Whether `backup` lies on `path` and became consistent before its timeline forked off."""
    for span in path:
        if span.timeline == backup.timeline:
            return span.begin <= backup.start_lsn and (
                span.end is None or backup.stop_lsn <= span.end
            )
    return False


def choose_backup(
    backups: Sequence[BackupInfo], target: Target, histories: Histories
) -> BackupInfo:
    """The base backup a restore to `target` starts from (see the module docstring)."""
    if not backups:
        raise TargetError("the repository holds no backup")
    tli = target.timeline or latest_timeline(histories, backups)
    path = timeline_path(tli, histories)
    candidates = [b for b in backups if serves(b, path)]
    if not candidates:
        raise TargetError(f"no backup lies on timeline {tli}'s history")
    if target.kind == "time":
        assert target.time is not None
        fit = [b for b in candidates if b.stop_time <= target.time]
        if not fit:
            oldest = min(candidates, key=lambda b: b.stop_time)
            raise TargetError(
                f"target time {_iso(target.time)} is before the end of the oldest backup "
                f"({oldest.label}, ended {_iso(oldest.stop_time)}): nothing can restore to it"
            )
        return max(fit, key=lambda b: (b.stop_time, b.stop_lsn))
    if target.kind == "lsn":
        assert target.lsn is not None
        fit = [b for b in candidates if b.stop_lsn <= target.lsn]
        if not fit:
            oldest = min(candidates, key=lambda b: b.stop_lsn)
            raise TargetError(
                f"target LSN {format_lsn(target.lsn)} is before the end of the oldest backup "
                f"({oldest.label}, ended at {format_lsn(oldest.stop_lsn)})"
            )
        return max(fit, key=lambda b: b.stop_lsn)
    return max(candidates, key=lambda b: (b.stop_lsn, b.stop_time))


def _iso(t: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def needed_segments(
    start_lsn: int, end_lsn: int, path: Sequence[Span], seg_size: int = WAL_SEGMENT_SIZE
) -> list[Segment]:
    """The segments replay reads from `start_lsn` through `end_lsn`, timeline by timeline."""
    firsts = [(segno_of(s.begin, seg_size), s.timeline) for s in path]
    out: list[Segment] = []
    for segno in range(segno_of(start_lsn, seg_size), segno_of(end_lsn, seg_size) + 1):
        tli = max(t for first, t in firsts if first <= segno)
        out.append(Segment(tli, segno))
    return out


def available_segments(
    start_lsn: int,
    path: Sequence[Span],
    archived: Iterable[Segment],
    seg_size: int = WAL_SEGMENT_SIZE,
) -> list[Segment]:
    """The unbroken run of archived segments replay can read from `start_lsn` on `path`."""
    have = set(archived)
    firsts = [(segno_of(s.begin, seg_size), s.timeline) for s in path]
    out: list[Segment] = []
    segno = segno_of(start_lsn, seg_size)
    while True:
        seg = Segment(max(t for first, t in firsts if first <= segno), segno)
        if seg not in have:
            return out
        out.append(seg)
        segno += 1


def unreachable_segments(
    start_lsn: int,
    path: Sequence[Span],
    archived: Iterable[Segment],
    seg_size: int = WAL_SEGMENT_SIZE,
) -> tuple[Segment | None, list[Segment]]:
    """(the first missing segment, the archived segments on `path` beyond it).

    Replay from `start_lsn` stops at the first missing segment: anything archived
    after that gap cannot be restored to. No gap: (None, [])."""
    have = set(archived)
    run = available_segments(start_lsn, path, have, seg_size)
    next_segno = (run[-1].segno if run else segno_of(start_lsn, seg_size) - 1) + 1
    firsts = [(segno_of(s.begin, seg_size), s.timeline) for s in path]

    def on_path(seg: Segment) -> bool:
        return seg.timeline == max(t for first, t in firsts if first <= seg.segno)

    beyond = sorted(s for s in have if s.segno > next_segno and on_path(s))
    if not beyond:
        return None, []
    missing = Segment(max(t for first, t in firsts if first <= next_segno), next_segno)
    return missing, beyond


def chain(backup: BackupInfo, by_label: Mapping[str, BackupInfo]) -> list[BackupInfo]:
    """`backup` and the backups it builds on, newest first; KeyError on a missing parent."""
    out = [backup]
    while out[-1].parent is not None:
        out.append(by_label[out[-1].parent])
    return out


# -- retention ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryPlan:
    keep: tuple[str, ...]  # labels, oldest first
    expire: tuple[str, ...]  # labels, oldest first
    expire_wal: tuple[Segment, ...]
    # The first segment number kept (None: no backup, nothing expires); a `.partial`
    # or `.backup` file of an earlier segment goes with the segments.
    first_kept_segno: int | None = None

    def describe(self) -> str:
        return (
            f"keep {len(self.keep)} backup(s), expire {len(self.expire)} backup(s) "
            f"and {len(self.expire_wal)} WAL segment(s)"
        )


def plan_expiry(
    backups: Sequence[BackupInfo],
    archived: Iterable[Segment],
    *,
    full: int,
    window: float,
    now: float,
    seg_size: int = WAL_SEGMENT_SIZE,
) -> ExpiryPlan:
    """What retention expires (rules in the module docstring)."""
    if full < 1:
        raise ValueError("retention must keep at least one full backup")
    by_label = {b.label: b for b in backups}
    ordered = sorted(backups, key=lambda b: (b.stop_time, b.stop_lsn))
    if not ordered:
        return ExpiryPlan((), (), (), None)
    keep: set[str] = {ordered[-1].label}
    fulls = [b for b in ordered if b.kind == "full"]
    kept_fulls = {b.label for b in fulls[-full:]}
    keep |= kept_fulls
    for b in ordered:
        try:
            root = chain(b, by_label)[-1]
        except KeyError:
            continue  # broken chain: not restorable, not kept for its own sake
        if root.label in kept_fulls:
            keep.add(b.label)
    if window > 0:
        edge = now - window
        inside = [b for b in ordered if b.stop_time >= edge]
        before = [b for b in ordered if b.stop_time < edge]
        keep |= {b.label for b in inside}
        if before:
            keep.add(before[-1].label)
    for label in list(keep):
        b = by_label[label]
        while b.parent is not None and b.parent in by_label:
            keep.add(b.parent)
            b = by_label[b.parent]
    kept = [b for b in ordered if b.label in keep]
    first = min(segno_of(b.start_lsn, seg_size) for b in kept)
    return ExpiryPlan(
        keep=tuple(b.label for b in kept),
        expire=tuple(b.label for b in ordered if b.label not in keep),
        expire_wal=tuple(sorted(s for s in archived if s.segno < first)),
        first_kept_segno=first,
    )
