"""The failover state machine: `decide(view) -> Decision`, a pure function.

The rules, in order of precedence:

1. Fail closed. A running primary that does not hold the leader lease demotes
   at once (immediate stop). The election reports the lease lost before it can
   expire in etcd, so the old primary stops accepting writes before any other
   member can win the lease. A data directory whose WAL left the leader's
   timeline history rejoins only through pg_rewind (or a fresh clone), never by
   starting as it is; a crashed primary's is first brought to a clean shutdown
   to learn where its WAL ends (spofless.pg.rejoin). Divergent WAL that may hold
   commits acknowledged while synchronous mode was degraded is never discarded
   without an operator.
2. One leader. Only the lease holder is (or becomes) the writable primary;
   every write to the leader key is a compare-and-swap on the fencing token
   (done by the agent, not here).
3. Failover picks the best replica. With no leader, a running replica races for
   the lease only when no reachable eligible member has a more recent WAL
   position; it is ineligible when it lags the last published leader position
   by more than `maximum_lag_on_failover` bytes, when it is on an older timeline
   than the last leader's, or, in synchronous mode, when it is not known to be
   synchronous.
4. Paused: no automatic failover; members keep what they are.
5. A standby cluster (`standby_of`) is never writable by itself: its leader follows
   the primary cluster (spofless.pg._standby has its rules), its members follow it.
6. With a region lease (`auto_promote`, spofless.pg._region), the primary cluster's
   leader bootstraps, starts or promotes a primary only while it holds the region
   lease, and stops writes (STEP_DOWN: fast shutdown, keeping its leader lease) once
   less than the margin is left of it, before etcd can hand the region to another.
"""

from __future__ import annotations

from spofless.pg._standby import standby_leader
from spofless.pg.rejoin import Divergence, disk_divergence, divergence, unsafe_ranges
from spofless.pg.view import (
    Action,
    ClusterState,
    Decision,
    Role,
    TimelineHistory,
    View,
    format_lsn,
)


def decide(view: View) -> Decision:
    """The one action for this loop and the sentence that explains it."""
    if view.cluster is None:
        return _without_etcd(view)
    if not view.local.has_data:
        return _without_data(view, view.cluster)
    foreign = _foreign(view, view.cluster)
    if foreign is not None:
        return foreign
    if view.lease.held:
        return _as_leader(view, view.cluster)
    return _as_follower(view, view.cluster)


def _d(action: Action, reason: str, target: str | None = None, *, failed: bool = False) -> Decision:
    return Decision(action, reason, target, failed)


def _region_lost(v: View) -> Decision | None:
    """Rule 6 for a running primary: STEP_DOWN when the region lease is lost."""
    r = v.region
    if r is None or not r.lost:
        return None
    return _d(
        Action.STEP_DOWN,
        f"{r.why_not()}: stopping writes before "
        "the quorum can give the region to another cluster (fast shutdown, keeping the lease)",
    )


def _region_wait(v: View, what: str) -> Decision | None:
    """Rule 6 before a primary starts: WAIT unless the region lease is held."""
    r = v.region
    if r is None or r.held:
        return None
    return _d(Action.WAIT, f"I hold the leader lease but {r.why_not()}: not {what}")


def _without_etcd(v: View) -> Decision:
    local = v.local
    if local.running and local.role is Role.PRIMARY:
        if v.lease.held and (lost := _region_lost(v)) is not None:
            return lost
        if v.lease.held:
            return _d(
                Action.NOTHING,
                f"etcd unreachable; my lease stays valid for {v.lease.valid_for:.1f}s, "
                "so I stay the primary until then",
            )
        return _d(
            Action.DEMOTE,
            "etcd unreachable and my leader lease is lost: demoting before another "
            "member can be promoted",
        )
    if local.running:
        return _d(Action.NOTHING, f"etcd unreachable; staying a replica of {local.following}")
    return _d(Action.WAIT, "etcd unreachable; PostgreSQL stays stopped until the cluster is known")


def _foreign(v: View, c: ClusterState) -> Decision | None:
    """A data directory of another cluster (e.g. a bootstrap that lost the race) is never
    followed, rewound or promoted."""
    mine, theirs = v.local.system_id, c.system_id
    if mine is None or theirs is None or mine == theirs:
        return None
    why = f"my data directory belongs to another cluster (system {mine}, not {theirs})"
    if v.local.running:
        return _d(Action.DEMOTE, f"{why}: stopping it")
    leader = c.leader.name if c.leader is not None and c.leader.name != v.name else None
    if leader is not None and v.policy.allow_reclone:
        return _d(Action.RECLONE, f"{why}: recloning from {leader}", leader)
    return _d(Action.WAIT, f"{why}; removing it needs allow_reclone: staying stopped")


def _without_data(v: View, c: ClusterState) -> Decision:
    if v.lease.held:
        if not c.initialized and c.standby_of is not None:
            if v.remote is None or not v.remote.reachable:
                return _d(
                    Action.WAIT,
                    f"I lead a new standby cluster; no read-write member of {c.standby_of} "
                    "answers to clone from",
                )
            return _d(
                Action.BOOTSTRAP,
                f"I lead a new standby cluster: cloning it from the primary cluster {c.standby_of}",
                c.standby_of,
            )
        if not c.initialized and v.local.may_bootstrap:
            if (wait := _region_wait(v, "bootstrapping")) is not None:
                return wait
            return _d(Action.BOOTSTRAP, "I hold the leader lease of a new cluster: running initdb")
        if not c.initialized:
            return _d(
                Action.RELEASE,
                "I hold the leader lease of a new cluster but join a restored one "
                "(clone-only): giving the lease up",
            )
        return _d(
            Action.RELEASE,
            "I hold the leader lease but have no data directory: giving the lease up",
        )
    if c.leader is None:
        if c.initialized:
            return _d(Action.WAIT, "no data directory and no leader to clone from")
        if c.paused:
            return _d(Action.WAIT, "paused: not bootstrapping a new cluster")
        if not v.local.may_bootstrap:
            return _d(
                Action.WAIT,
                "no data directory: I join a restored cluster (clone-only), waiting for "
                "its primary to clone from",
            )
        return _d(Action.ACQUIRE, "no cluster yet: racing for the leader lease to bootstrap it")
    leader = c.members.get(c.leader.name)
    # A standby cluster's leader is itself a standby: its members clone from it.
    role = Role.REPLICA if c.standby_of is not None else Role.PRIMARY
    if leader is None or not leader.running or leader.role is not role:
        return _d(Action.WAIT, f"no data directory; waiting for leader {c.leader.name} to run")
    return _d(
        Action.CLONE,
        f"no data directory: cloning from leader {c.leader.name}",
        c.leader.name,
    )


def _as_leader(v: View, c: ClusterState) -> Decision:
    local, token = v.local, v.lease.token
    if c.leader is not None and c.leader.name != v.name:
        # The election says I hold it but the key names another: trust the key.
        if local.running and local.role is Role.PRIMARY:
            return _d(
                Action.DEMOTE,
                f"leader key names {c.leader.name}, not me: demoting",
            )
        return _d(Action.WAIT, f"leader key names {c.leader.name}; my lease is stale")
    if c.standby_of is not None:
        return standby_leader(v, c)
    if not local.running:
        if local.start_failures >= v.policy.max_start_failures:
            return _d(
                Action.RELEASE,
                f"PostgreSQL failed to start {local.start_failures} times as primary: "
                "giving the leader lease up",
            )
        if (wait := _region_wait(v, "starting as primary")) is not None:
            return wait
        return _d(
            Action.START_PRIMARY,
            f"I hold the leader lease (token {token}) and PostgreSQL is stopped: "
            "starting it as primary",
        )
    if local.role is None:
        if local.unanswered_for >= v.policy.unanswered_bound:
            # Fail closed, and let a member that can serve take over.
            return _d(
                Action.DEMOTE,
                f"I hold the leader lease but PostgreSQL has not answered me for "
                f"{local.unanswered_for:.1f}s: stopping it and giving the lease up",
            )
        return _d(Action.WAIT, "I hold the leader lease; PostgreSQL does not answer me yet")
    if local.role is Role.PRIMARY and (lost := _region_lost(v)) is not None:
        return lost
    sw = c.switchover
    if local.role is Role.PRIMARY and sw is not None and sw.leader in (None, v.name):
        target, why_not = _switchover_target(v, c, sw.candidate)
        if target is None:
            return _d(Action.RENEW, f"switchover requested but impossible: {why_not}")
        return _d(Action.SWITCHOVER, f"switchover requested: handing over to {target}", target)
    if local.role is Role.REPLICA:
        if (wait := _region_wait(v, "promoting")) is not None:
            return wait
        return _d(
            Action.PROMOTE,
            f"I won the leader lease (token {token}) at {format_lsn(local.wal_position)}: "
            "promoting",
        )
    return _d(
        Action.RENEW,
        f"primary on timeline {local.timeline} at {format_lsn(local.wal_position)}, "
        f"leader lease token {token} renewed",
    )


def _as_follower(v: View, c: ClusterState) -> Decision:
    local = v.local
    leader = c.leader.name if c.leader is not None and c.leader.name != v.name else None
    if local.running and local.role is Role.PRIMARY:
        if leader is not None:
            return _d(
                Action.DEMOTE,
                f"{leader} holds the leader lease (token {c.leader.token if c.leader else '?'}) "
                "and I am a primary without it: demoting",
            )
        return _d(
            Action.DEMOTE,
            "I am a primary without the leader lease: demoting before anyone can be promoted",
        )
    if local.running and local.role is None:
        # It runs but does not answer me: wait a little (a restart, a busy server), then
        # stop it (SIGKILL if an immediate stop hangs) and start again from the disk.
        if local.unanswered_for >= v.policy.rewind_after:
            return _d(
                Action.DEMOTE,
                f"PostgreSQL has not answered me for {local.unanswered_for:.0f}s: stopping it",
            )
        return _d(Action.WAIT, "PostgreSQL does not answer me yet")
    if leader is None:
        return _no_leader(v, c)
    if not local.running:
        return _stopped_follower(v, c, leader)
    if local.following != leader:
        return _d(
            Action.FOLLOW,
            f"following the new leader {leader} (was {local.following or 'none'})",
            leader,
        )
    history = c.history
    if (
        history is not None
        and local.recovery_timeline is not None
        and local.recovery_position is not None
    ):
        div = divergence(local.recovery_timeline, local.recovery_position, history)
        # A running replica's newer timeline came from the WAL it received: the leader
        # moved to it (a promotion, a rewind) and has not published its history yet.
        # Diverged only if that lasts while it does not stream.
        if (
            div is not None
            and _history_behind(div, history)
            and (local.streaming or local.not_streaming_for < v.policy.rewind_after)
        ):
            return _d(
                Action.NOTHING,
                f"replica of {leader} on timeline {div.timeline}, newer than the history "
                f"{leader} has published (timeline {history.timeline}): waiting for it",
            )
        if div is not None:
            return _rejoin(v, c, leader, f"I cannot follow {leader}: {div}", div)
    leader_member = c.members.get(leader)
    if (
        not local.streaming
        and local.not_streaming_for >= v.policy.rewind_after
        and leader_member is not None
        and leader_member.timeline is not None
        and local.timeline is not None
        and local.timeline < leader_member.timeline
    ):
        return _rejoin(
            v,
            c,
            leader,
            f"not streaming from {leader} for {local.not_streaming_for:.0f}s and on timeline "
            f"{local.timeline} < {leader_member.timeline}",
            None,
        )
    if not local.streaming:
        return _d(
            Action.NOTHING,
            f"replica of {leader}, not streaming for {local.not_streaming_for:.0f}s",
        )
    return _d(
        Action.NOTHING,
        f"replica streaming from {leader} at {format_lsn(local.wal_position)}",
    )


def _history_behind(div: Divergence, history: TimelineHistory) -> bool:
    """The member is on a timeline newer than the leader's published history."""
    return div.switchpoint is None and div.timeline > history.timeline


def _stopped_follower(v: View, c: ClusterState, leader: str) -> Decision:
    """A stopped data directory joins the leader: as it is when its WAL is all in the
    leader's history, else after a rewind (see spofless.pg.rejoin)."""
    local, disk = v.local, v.local.disk
    if local.rewinding and not local.rewind_failed:
        # Killed mid-rewind (or by a restart of this agent): run it again from its start.
        # One that failed here goes on below, to a re-clone where that is safe.
        return _d(Action.REWIND, f"finishing an interrupted pg_rewind from {leader}", leader)
    if disk is not None and disk.position is None:
        return _d(
            Action.RECOVER,
            f"my data directory was a primary that stopped uncleanly ({disk.state}): crash "
            "recovery in single-user mode, to learn where its WAL ends",
        )
    history = c.history
    leader_member = c.members.get(leader)
    if (
        history is None
        or leader_member is None
        or leader_member.timeline is None
        or history.timeline != leader_member.timeline
    ):
        return _d(Action.WAIT, f"waiting for leader {leader} to publish its timeline history")
    div = disk_divergence(disk, history) if disk is not None else None
    if div is not None:
        return _rejoin(v, c, leader, str(div), div)
    if local.replica_start_failures >= v.policy.max_start_failures:
        return _rejoin(
            v,
            c,
            leader,
            f"PostgreSQL failed to start as a replica {local.replica_start_failures} times",
            None,
        )
    return _d(Action.START_REPLICA, f"starting as a replica of leader {leader}", leader)


def _rejoin(v: View, c: ClusterState, leader: str, why: str, div: Divergence | None) -> Decision:
    """Rewind (or re-clone) onto the leader, unless that would discard commits that a
    client may have seen acknowledged (synchronous mode only guarantees that for WAL
    written while it was not degraded)."""
    policy, local = v.policy, v.local
    unsafe = unsafe_ranges(div, c.degraded) if div is not None and policy.synchronous else []
    if unsafe and v.name not in c.discard:
        ranges = ", ".join(
            f"{format_lsn(max(r.start, div.switchpoint or 0))}-"
            f"{format_lsn(min(r.end, div.position) if r.end is not None else div.position)}"
            f" on timeline {r.timeline}"
            for r in unsafe
            if div is not None
        )
        return _d(
            Action.WAIT,
            f"{why}; that WAL ({ranges}) was written while synchronous mode was degraded and "
            "may hold acknowledged commits no other member has: kept out. Save them, then "
            f"`spofless pg rejoin FILE --member {v.name} --discard`",
            failed=True,
        )
    if not local.rewind_failed:
        return _d(Action.REWIND, f"{why}: rewinding it to follow {leader}", leader)
    # In synchronous mode the divergent WAL holds no acknowledged commit (checked
    # above): re-cloning loses nothing a client saw. Asynchronous: only when allowed.
    safe = policy.synchronous and div is not None
    if policy.allow_reclone or safe or v.name in c.discard:
        if local.reclone_blocked:
            return _d(
                Action.WAIT,
                f"{why} and pg_rewind failed; cannot re-clone: {local.reclone_blocked}",
                failed=True,
            )
        return _d(Action.RECLONE, f"{why} and pg_rewind failed: re-cloning from {leader}", leader)
    return _d(
        Action.WAIT,
        f"{why} and pg_rewind failed; re-cloning (which keeps the old data directory aside) "
        f"needs allow_reclone or `spofless pg rejoin FILE --member {v.name} --discard`",
        failed=True,
    )


def _no_leader(v: View, c: ClusterState) -> Decision:
    local = v.local
    if not local.running:
        # Read-only and without an upstream: safe whatever the data directory was, and
        # it lets the member report its WAL position and join the race.
        return _d(Action.START_REPLICA, "no leader: starting read-only to join the election")
    sw = c.switchover
    if sw is not None and sw.candidate is not None:
        if sw.candidate == v.name:
            return _d(
                Action.ACQUIRE,
                f"no leader; I am the requested candidate at {format_lsn(local.wal_position)}: "
                "taking the leader lease",
            )
        cand = c.members.get(sw.candidate)
        if cand is not None and cand.reachable and cand.running:
            return _d(Action.WAIT, f"no leader; {sw.candidate} is the requested candidate")
    if c.paused:
        return _d(Action.NOTHING, "paused: no leader, but automatic failover is off")
    why_not = _ineligible(v, c, v.name, local.wal_position)
    if why_not:
        return _d(Action.WAIT, f"no leader; I may not take over: {why_not}")
    ahead = _better_candidate(v, c)
    if ahead is not None:
        return _d(
            Action.WAIT,
            f"no leader; {ahead} has more recent WAL than mine "
            f"({format_lsn(local.wal_position)}): letting it take over",
        )
    others = sum(1 for m in c.members.values() if m.name != v.name and m.reachable)
    return _d(
        Action.ACQUIRE,
        f"no leader; I have the most recent WAL ({format_lsn(local.wal_position)}) of "
        f"{others + 1} reachable members: taking the leader lease",
    )


def _ineligible(v: View, c: ClusterState, name: str, pos: int | None) -> str | None:
    """Why `name` may not be promoted, or None when it may."""
    policy = v.policy
    tl = v.local.timeline if name == v.name else _member_timeline(c, name)
    if c.history is not None and (tl is None or tl < c.history.timeline):
        # WAL of an older timeline is not "more recent" whatever its position: the
        # newest timeline holds every commit its leader acknowledged.
        return (
            f"{name} is on timeline {tl if tl is not None else '?'}, behind the cluster's "
            f"timeline {c.history.timeline}"
        )
    if policy.synchronous:
        sync = c.sync.members
        if sync and name not in sync:
            return (
                f"{name} is not a known synchronous replica (those are {', '.join(sorted(sync))})"
            )
        if not sync and policy.strict:
            return "strict synchronous mode and no replica is known to be synchronous"
    if c.leader_wal_position is not None:
        if pos is None:
            return f"{name}'s WAL position is unknown"
        lag = c.leader_wal_position - pos
        if lag > policy.maximum_lag_on_failover:
            return (
                f"{name} lags {lag} bytes behind the last leader position, more than "
                f"maximum_lag_on_failover ({policy.maximum_lag_on_failover})"
            )
    return None


def _member_timeline(c: ClusterState, name: str) -> int | None:
    m = c.members.get(name)
    return m.timeline if m is not None else None


def _better_candidate(v: View, c: ClusterState) -> str | None:
    """A reachable, eligible, running replica with more recent WAL than mine."""
    mine = v.local.wal_position if v.local.wal_position is not None else -1
    best: tuple[int, str] | None = None
    for m in c.members.values():
        if m.name == v.name or not m.reachable or not m.running or m.role is not Role.REPLICA:
            continue
        if m.wal_position is None or m.wal_position <= mine:
            continue
        if _ineligible(v, c, m.name, m.wal_position) is not None:
            continue
        if best is None or m.wal_position > best[0]:
            best = (m.wal_position, m.name)
    return best[1] if best else None


def _switchover_target(v: View, c: ClusterState, wanted: str | None) -> tuple[str | None, str]:
    """The replica to hand over to (the requested one, or the best), or None and why."""
    replicas = [
        m
        for m in c.members.values()
        if m.name != v.name and m.reachable and m.running and m.role is Role.REPLICA
    ]
    if wanted is not None:
        m = next((m for m in replicas if m.name == wanted), None)
        if m is None:
            return None, f"{wanted} is not a running, reachable replica"
        why_not = _ineligible(v, c, m.name, m.wal_position)
        return (None, why_not) if why_not else (m.name, "")
    eligible = [m for m in replicas if _ineligible(v, c, m.name, m.wal_position) is None]
    if not eligible:
        return None, "no running replica may be promoted"
    best = max(eligible, key=lambda m: (m.wal_position or 0, m.name))
    return best.name, ""
