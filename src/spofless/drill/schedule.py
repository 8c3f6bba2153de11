"""A seeded fault schedule: the same seed and settings give the same faults, always.

    draw_schedule(seed, count, kinds) -> [ScheduledFault]
    fault_spec(fault, pg, etcd) -> FaultSpec     what the fault does, as a drill fault

Each fault names its kind and, for pauses, how long the paused processes stay
frozen. Faults are applied one after another, each after the system is whole
again, so a failure is attributable to one fault and replayable from the seed
(printed by whoever runs it). `spofless drill --random` and the test suite's
randomized PostgreSQL sequences (tests/integration/pg_nemesis.py) draw the same
schedule and apply each fault as the same drill fault (faults.apply_fault): one
implementation.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from spofless.topology._drills import FaultSpec


class FaultKind(StrEnum):
    NODE_KILL = "node-kill"  # kill -9 of the primary's agent and every PostgreSQL process
    POSTMASTER_KILL = "postmaster-kill"  # kill -9 of the primary's postmaster only
    NODE_PAUSE = "node-pause"  # SIGSTOP of the primary's agent and PostgreSQL, past the ttl
    AGENT_PAUSE = "agent-pause"  # SIGSTOP of the primary's agent only: an orphaned primary
    REPLICA_KILL = "replica-kill"  # kill -9 of a replica's node
    REJOIN_KILL = "rejoin-kill"  # kill -9 of a member while it is rewound or cloned
    ETCD_LEADER_KILL = "etcd-leader-kill"  # kill -9 of the etcd raft leader
    ETCD_LEADER_PAUSE = "etcd-leader-pause"  # SIGSTOP of the etcd raft leader
    SWITCHOVER = "switchover"  # a planned switchover to any replica


FAULT_KINDS: tuple[FaultKind, ...] = tuple(FaultKind)
_PAUSES = {FaultKind.NODE_PAUSE, FaultKind.AGENT_PAUSE, FaultKind.ETCD_LEADER_PAUSE}


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    index: int  # 0-based position in the schedule
    kind: FaultKind
    pause_for: float = 0.0  # seconds frozen (pauses only)
    pick: int = 0  # which of several eligible targets (e.g. replicas), modulo their count

    def __str__(self) -> str:
        extra = f" for {self.pause_for:.1f}s" if self.pause_for else ""
        return f"#{self.index} {self.kind}{extra}"


def draw_schedule(
    seed: int,
    count: int,
    kinds: Sequence[FaultKind] = FAULT_KINDS,
    *,
    pause_range: tuple[float, float] = (4.0, 8.0),
) -> list[ScheduledFault]:
    """`count` faults drawn from `kinds` with `seed`; every kind appears at least once
    when `count` allows (so a short run still covers them all), in a shuffled order."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if not kinds:
        raise ValueError("at least one fault kind is needed")
    rng = random.Random(seed)
    drawn = list(kinds)[:count]
    drawn += [rng.choice(list(kinds)) for _ in range(count - len(drawn))]
    rng.shuffle(drawn)
    out = []
    for i, kind in enumerate(drawn):
        pause = round(rng.uniform(*pause_range), 1) if kind in _PAUSES else 0.0
        out.append(ScheduledFault(i, kind, pause, rng.randrange(1 << 16)))
    return out


def fault_spec(fault: ScheduledFault, pg: str, etcd: str, *, at: float = 0.0) -> FaultSpec:
    """The drill fault a scheduled fault is, on postgres component `pg` and etcd
    component `etcd`, applied `at` seconds into its phase. A rejoin kill is a node kill
    here: killing the member again while it is repaired needs someone following it
    (the test suite's nemesis does)."""
    kind = fault.kind
    fields: dict[str, object] = {"at": at}
    held = {"for": fault.pause_for}
    if kind in (FaultKind.NODE_KILL, FaultKind.REJOIN_KILL):
        fields.update(kill=pg, role="primary")
    elif kind is FaultKind.POSTMASTER_KILL:
        fields.update(kill=pg, role="primary", process="postmaster")
    elif kind is FaultKind.NODE_PAUSE:
        fields.update(held, pause=pg, role="primary")
    elif kind is FaultKind.AGENT_PAUSE:
        fields.update(held, pause=pg, role="primary", process="agent")
    elif kind is FaultKind.REPLICA_KILL:
        fields.update(kill=pg, role="replica")
    elif kind is FaultKind.ETCD_LEADER_KILL:
        fields.update(kill=etcd, role="leader")
    elif kind is FaultKind.ETCD_LEADER_PAUSE:
        fields.update(held, pause=etcd, role="leader")
    else:
        fields.update(switchover=pg)
    return FaultSpec.model_validate(fields)
