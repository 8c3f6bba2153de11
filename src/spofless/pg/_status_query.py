"""The running server's state in one round trip (two on a primary): role, timeline,
WAL positions, the WAL receiver, the recovery point and the replication rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from spofless.pg._server_model import PgStatus, ReplicationRow
from spofless.pg.view import Role, optional_lsn

Query = Callable[[str], Awaitable[list[tuple[Any, ...]]]]


async def read_status(query: Query) -> PgStatus:
    """Role, timeline and WAL positions of the running server; replication if primary."""

    rows = await query(
        "SELECT pg_is_in_recovery(),"
        " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,"
        " CASE WHEN pg_is_in_recovery() THEN NULL"
        "  ELSE pg_walfile_name(pg_current_wal_lsn()) END,"
        " pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
        " (SELECT status FROM pg_stat_wal_receiver),"
        " (SELECT received_tli FROM pg_stat_wal_receiver),"
        " (SELECT timeline_id FROM pg_control_checkpoint()),"
        " (SELECT min_recovery_end_timeline FROM pg_control_recovery()),"
        " (SELECT min_recovery_end_lsn::text FROM pg_control_recovery()),"
        " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')"
    )
    (
        in_recovery,
        current,
        walfile,
        received,
        replayed,
        rstatus,
        rtli,
        ctli,
        mtli,
        mlsn,
        seg,
    ) = rows[0]
    if not in_recovery:
        repl = await query(
            "SELECT application_name, state, sync_state, flush_lsn::text, replay_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint"
            " FROM pg_stat_replication ORDER BY application_name"
        )
        return PgStatus(
            role=Role.PRIMARY,
            timeline=int(walfile[:8], 16),
            wal_position=optional_lsn(current),
            replication=tuple(
                ReplicationRow(n, st, ss, optional_lsn(f), optional_lsn(r), lag)
                for n, st, ss, f, r, lag in repl
            ),
        )
    rec, rep = optional_lsn(received), optional_lsn(replayed)
    known = [p for p in (rec, rep) if p is not None]
    return PgStatus(
        role=Role.REPLICA,
        timeline=rtli or ctli,
        wal_position=max(known) if known else None,
        received_lsn=rec,
        replayed_lsn=rep,
        receiver_status=rstatus,
        recovery_timeline=mtli or None,
        recovery_lsn=optional_lsn(mlsn) or None,
        segment_size=int(seg or 0),
    )
