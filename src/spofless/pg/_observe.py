"""What an agent observes of its local PostgreSQL each loop: a LocalState.

The adapter's answers (running, its status, its control file, the WAL files a
replica reads) turned into the plain data `decide` reads, with the few facts
that only time gives: since when a replica has not streamed, since when a
running server has not answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from spofless.pg._errors import PgCommandError
from spofless.pg.server import PostgresServer
from spofless.pg.view import LocalState, Role

logger = logging.getLogger("spofless.pg.agent")


class LocalObserver:
    """Observes one member's PostgreSQL; `system_id` is its data directory's (read once)."""

    def __init__(self, server: PostgresServer, keep_old_data: int) -> None:
        self.server = server
        self.keep_old_data = keep_old_data
        self.system_id: str | None = None
        self._not_streaming_since: float | None = None
        self._unanswered_since: float | None = None  # PostgreSQL runs but does not answer

    async def observe(
        self,
        now: float,
        *,
        rewind_failed: bool,
        start_failures: int,
        replica_start_failures: int,
    ) -> LocalState:
        """This member's PostgreSQL now; the counters are the agent's (what it tried)."""
        srv = self.server
        if not srv.has_data():
            self.system_id = None
            return LocalState(has_data=False, may_bootstrap=not srv.clone_only())
        if self.system_id is None:
            with contextlib.suppress(PgCommandError):
                self.system_id = (await srv.controldata()).system_identifier
        if not srv.running:
            disk = None
            with contextlib.suppress(PgCommandError):
                disk = await srv.disk()  # one pg_controldata per loop
            return LocalState(
                has_data=True,
                # Last a primary: shut down as one, or crashed as one (spofless.pg.rejoin).
                was_primary=disk is not None
                and (disk.shutdown_checkpoint or disk.position is None),
                rewind_failed=rewind_failed,
                start_failures=start_failures,
                replica_start_failures=replica_start_failures,
                system_id=self.system_id,
                disk=disk,
                rewinding=srv.rewinding,
                reclone_blocked=(
                    srv.reclone_blocked(self.keep_old_data) if rewind_failed else None
                ),
            )
        try:
            st = await srv.status()
        except PgCommandError as exc:
            if self._unanswered_since is None:
                self._unanswered_since = now
                logger.warning("%s: PostgreSQL does not answer: %s", srv.name, exc)
            return LocalState(
                has_data=True,
                running=True,
                rewind_failed=rewind_failed,
                unanswered_for=now - self._unanswered_since,
            )
        self._unanswered_since = None
        timeline, replay_timeline = st.timeline, None
        if st.role is Role.REPLICA:
            # What PostgreSQL reports lags behind a timeline switch: read the timeline
            # from the WAL files the replica replays (spofless.pg._datadir.timelines_at).
            replay_timeline, received = await asyncio.to_thread(
                srv.timelines_at, (st.replayed_lsn, st.wal_position), st.segment_size
            )
            timeline = received or replay_timeline or timeline
        streaming = st.receiver_status == "streaming"
        if streaming or st.role is Role.PRIMARY:
            self._not_streaming_since = None
        elif self._not_streaming_since is None:
            self._not_streaming_since = now
        return LocalState(
            has_data=True,
            running=True,
            role=st.role,
            timeline=timeline,
            wal_position=st.wal_position,
            following=srv.upstream.name if srv.upstream else None,
            streaming=streaming,
            not_streaming_for=now - self._not_streaming_since if self._not_streaming_since else 0,
            rewind_failed=rewind_failed,
            start_failures=start_failures,
            system_id=self.system_id,
            recovery_timeline=replay_timeline or st.recovery_timeline,
            recovery_position=st.replayed_lsn if replay_timeline else st.recovery_lsn,
        )
