"""A standby cluster's probe of the primary cluster it copies, on its own task.

Every `interval` it asks the read-write route of the followed cluster (libpq
multi-host, `target_session_attrs=read-write`) for its timeline and WAL position.
The agent's loop reads the latest answer without waiting on it: a primary region
that is cut off costs the probe its connect timeout, never the loop (which renews
nothing itself, but must keep deciding).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from spofless.pg._errors import PgCommandError
from spofless.pg.server import PostgresServer, Upstream
from spofless.pg.view import RemotePrimary, optional_lsn

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds one probe may take (libpq's connect timeout is 2 s per host)


class RemoteProbe:
    """`follow(route)` says what to probe (None: nothing); `latest(now)` the last answer
    while it is fresh (None when stale or never probed)."""

    def __init__(self, name: str, server: PostgresServer, interval: float) -> None:
        self.name = name
        self.server = server
        self.interval = interval
        self._route: Upstream | None = None
        self._last: RemotePrimary | None = None
        self._at = 0.0
        self._wake = asyncio.Event()

    def follow(self, route: Upstream | None) -> None:
        if route != self._route:
            self._route, self._last = route, None
            self._wake.set()

    def latest(self, now: float) -> RemotePrimary | None:
        if self._route is None or self._last is None:
            return None
        if now - self._at > 2 * self.interval + PROBE_TIMEOUT:
            return None
        return self._last

    async def run(self) -> None:
        was_reachable: bool | None = None
        while True:
            route = self._route
            if route is not None:
                last = await self.probe(route)
                if route == self._route:
                    self._last, self._at = last, asyncio.get_running_loop().time()
                if last.reachable != was_reachable:
                    was_reachable = last.reachable
                    logger.info(
                        "%s: the primary cluster %s %s",
                        self.name,
                        route.name,
                        "has a read-write member"
                        if last.reachable
                        else "has no read-write member that answers",
                    )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def probe(self, route: Upstream) -> RemotePrimary:
        try:
            rows = await self.server.query(
                "SELECT pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()::text",
                on=route,
                limit=PROBE_TIMEOUT,
            )
        except PgCommandError:
            return RemotePrimary(False)
        walfile, lsn = rows[0]
        return RemotePrimary(True, int(walfile[:8], 16), optional_lsn(lsn))
