"""Synchronous replication, managed by the leader: `plan_sync(...) -> SyncPlan`, pure.

The invariant: every commit acknowledged to a client is on every replica that
etcd's sync record lists in `members` (only those may be promoted). PostgreSQL
runs `synchronous_standby_names = 'FIRST 1 ("x")'`: one synchronous standby.

Changing the synchronous standby from x to y keeps the invariant:

1. write the record {members: {}, pending: y}, THEN set the GUC to y (the agent
   applies the record first and changes the GUC only when the write succeeded);
   x leaves `members` before commits stop waiting for it;
2. when pg_stat_replication shows y as `sync`, record the primary's position L:
   every commit acknowledged through x lies at or before L;
3. when y has flushed past L, write {members: {y}}: y holds everything.

With no replica to make synchronous, the default mode degrades to asynchronous
(and says so); strict mode keeps waiting for the last synchronous standby, so
writes block rather than go unprotected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spofless.pg.view import Policy, SyncState, format_lsn

# A standby name no member has: in strict mode it makes commits wait, not succeed.
NO_STANDBY = "spofless-no-synchronous-standby"


@dataclass(frozen=True, slots=True)
class StandbyRow:
    """A replica as the primary's pg_stat_replication shows it."""

    name: str
    state: str  # "streaming" when usable
    sync_state: str  # "sync" once PostgreSQL waits for it
    flush_lsn: int | None


@dataclass(frozen=True, slots=True)
class SyncPlan:
    standby_names: str  # the synchronous_standby_names value to set
    record: SyncState | None  # the sync record to write before the GUC; None: unchanged
    reason: str
    degraded: bool = False  # asynchronous although synchronous mode is on


def standby_names(name: str) -> str:
    return f'FIRST 1 ("{name}")'


def plan_sync(
    leader: str,
    policy: Policy,
    current: SyncState,
    standbys: Iterable[StandbyRow],
    wal_position: int | None,
) -> SyncPlan:
    """What synchronous_standby_names and the sync record should be now."""
    if not policy.synchronous:
        empty = SyncState(leader=leader)
        return SyncPlan("", None if current == empty else empty, "asynchronous replication")
    rows = {r.name: r for r in standbys if r.state == "streaming"}
    members = sorted(current.members)
    if members and members[0] in rows:
        x = members[0]
        return SyncPlan(standby_names(x), _owned(current, leader), f"{x} is synchronous")
    if current.pending is not None and current.pending in rows:
        return _advance(leader, current, rows[current.pending], wal_position)
    candidates = sorted(rows.values(), key=lambda r: (-(r.flush_lsn or 0), r.name))
    if candidates:
        y = candidates[0].name
        return SyncPlan(
            standby_names(y),
            SyncState(leader=leader, pending=y),
            f"making {y} the synchronous standby",
        )
    if policy.strict:
        last = members[0] if members else current.pending or NO_STANDBY
        return SyncPlan(
            standby_names(last),
            _owned(current, leader),
            "strict synchronous mode and no replica streams: writes wait for one",
        )
    degraded = SyncState(leader=leader)
    return SyncPlan(
        "",
        None if current == degraded else degraded,
        "no replica streams: synchronous mode DEGRADED to asynchronous",
        degraded=True,
    )


def _owned(current: SyncState, leader: str) -> SyncState | None:
    """The record unchanged, except that it must name this leader."""
    if current.leader == leader:
        return None
    return SyncState(leader, current.members, current.pending, current.pending_lsn)


def _advance(leader: str, current: SyncState, y: StandbyRow, wal_position: int | None) -> SyncPlan:
    names = standby_names(y.name)
    if y.sync_state != "sync":
        return SyncPlan(names, _owned(current, leader), f"waiting for {y.name} to be synchronous")
    if current.pending_lsn is None:
        if wal_position is None:
            return SyncPlan(names, None, "primary WAL position unknown")
        return SyncPlan(
            names,
            SyncState(leader, frozenset(), y.name, wal_position),
            f"{y.name} is synchronous; it joins once flushed past {format_lsn(wal_position)}",
        )
    if y.flush_lsn is not None and y.flush_lsn >= current.pending_lsn:
        return SyncPlan(
            names,
            SyncState(leader, frozenset({y.name})),
            f"{y.name} holds every acknowledged commit: it is the synchronous replica",
        )
    return SyncPlan(
        names,
        _owned(current, leader),
        f"{y.name} catching up to {format_lsn(current.pending_lsn)} (at {format_lsn(y.flush_lsn)})",
    )
