"""The leader of a standby cluster: what it decides, a pure function of the View.

A standby cluster (a postgres component with `standby_of`, or one that `spofless pg
promote-region` turned into a standby) copies another cluster, usually in another
region. It has its own etcd and its own leader lease; its leader, the *standby
leader*, replicates from the primary cluster through that cluster's read-write route
(libpq multi-host, `target_session_attrs=read-write`, one replication slot per
standby cluster on the primary's leader) and its members replicate from it (cascading
replication). The rules, in order:

1. Never writable by itself. A standby leader never promotes; a member running as a
   primary in a standby cluster is the old primary of a cluster that was just made a
   standby: it steps down (fast shutdown, so its connected standbys receive all its
   WAL; it keeps the lease and records where its WAL ends in `P/demoted`).
2. A data directory that was last a primary rejoins the primary cluster through
   pg_rewind only, and only once a read-write member of that cluster answers: it may
   hold WAL the new primary never received (an asynchronous cross-region link).
3. Otherwise the standby leader runs as a standby of the primary cluster's route; one
   that stopped streaming for `rewind_after` while the primary cluster is on a newer
   timeline (its own local failover) is rewound onto it.
4. Local failover works as in a primary cluster: when the standby leader dies, the
   best replica takes the lease and re-points itself at the primary cluster; the
   others follow it as they follow any new leader.
"""

from __future__ import annotations

from spofless.pg.view import Action, ClusterState, Decision, Role, View, format_lsn


def _d(action: Action, reason: str, target: str | None = None, *, failed: bool = False) -> Decision:
    return Decision(action, reason, target, failed)


def standby_leader(v: View, c: ClusterState) -> Decision:
    """The lease holder of a standby cluster (c.standby_of is set)."""
    src = c.standby_of
    assert src is not None
    local, remote = v.local, v.remote
    up = remote is not None and remote.reachable
    if not local.running:
        if local.rewinding and not local.rewind_failed:
            if up:
                return _d(Action.REWIND, f"finishing an interrupted pg_rewind from {src}", src)
            return _d(Action.WAIT, f"an interrupted pg_rewind waits for {src} to answer")
        disk = local.disk
        if disk is not None and disk.position is None:
            return _d(
                Action.RECOVER,
                f"my data directory was a primary that stopped uncleanly ({disk.state}): "
                "crash recovery first, to learn where its WAL ends",
            )
        if local.rewind_failed:
            return _d(
                Action.WAIT,
                f"pg_rewind onto the primary cluster {src} failed: re-clone this member "
                "(move its data directory aside) to rejoin",
                failed=True,
            )
        if local.was_primary:
            if not up:
                return _d(
                    Action.WAIT,
                    f"my data directory was a primary; this cluster is now a standby of {src}, "
                    f"whose read-write member does not answer yet: staying stopped",
                )
            return _d(
                Action.REWIND,
                f"my data directory was a primary; this cluster is now a standby of {src}: "
                f"rewinding onto it (it may hold WAL {src} never received)",
                src,
            )
        if local.start_failures >= v.policy.max_start_failures:
            return _d(
                Action.RELEASE,
                f"PostgreSQL failed to start {local.start_failures} times: giving the lease up",
            )
        return _d(
            Action.START_REPLICA,
            f"I lead the standby cluster: starting as a standby of the primary cluster {src}",
            src,
        )
    if local.role is None:
        if local.unanswered_for >= v.policy.unanswered_bound:
            return _d(
                Action.DEMOTE,
                f"I lead the standby cluster but PostgreSQL has not answered me for "
                f"{local.unanswered_for:.1f}s: stopping it and giving the lease up",
            )
        return _d(Action.WAIT, "I lead the standby cluster; PostgreSQL does not answer me yet")
    if local.role is Role.PRIMARY:
        return _d(
            Action.STEP_DOWN,
            f"this cluster is now a standby of {src}: stopping writes (fast shutdown), "
            "keeping the lease, then following it",
        )
    if local.following != src:
        return _d(
            Action.FOLLOW,
            f"I lead the standby cluster: following the primary cluster {src} "
            f"(was {local.following or 'none'})",
            src,
        )
    if (
        not local.streaming
        and local.not_streaming_for >= v.policy.rewind_after
        and up
        and remote is not None
        and remote.timeline is not None
        and local.timeline is not None
        and local.timeline < remote.timeline
    ):
        return _d(
            Action.REWIND,
            f"not streaming from {src} for {local.not_streaming_for:.0f}s and on timeline "
            f"{local.timeline} < {remote.timeline}: rewinding onto it",
            src,
        )
    if not local.streaming:
        where = "" if up else f"; no read-write member of {src} answers"
        return _d(
            Action.RENEW,
            f"standby leader, not streaming from {src} for {local.not_streaming_for:.0f}s{where}",
        )
    return _d(
        Action.RENEW,
        f"standby leader streaming from the primary cluster {src} at "
        f"{format_lsn(local.wal_position)}",
    )
