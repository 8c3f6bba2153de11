"""What an agent knows of the other clusters of its group, each on its own task:
`RemoteProbe`, a standby cluster's probe of the primary it copies, and `PeerClaims`,
which cluster says it is the primary (an old primary region's guard after --force).

A standby cluster's probe of the primary cluster it copies:

Every `interval` it asks the read-write route of the followed cluster (libpq
multi-host, `target_session_attrs=read-write`) for its timeline and WAL position.
The agent's loop reads the latest answer without waiting on it: a primary region
that is cut off costs the probe its connect timeout, never the loop (which renews
nothing itself, but must keep deciding).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from spofless.dcs import DCSError, DCSSettings, EtcdStore, EtcdTls, KeyValueStore
from spofless.pg._errors import PgCommandError
from spofless.pg.server import PostgresServer, Upstream
from spofless.pg.view import ClusterState, RemotePrimary, optional_lsn

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
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

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


@dataclass(frozen=True, slots=True)
class PeerCluster:
    """Where another cluster of the group keeps its state: its etcd and its prefix."""

    name: str
    endpoints: tuple[str, ...]
    prefix: str


class PeerClaims:
    """Which other cluster of the group says it is the primary, read from its own etcd.

    `spofless pg promote-region --force` cannot fence a cluster it cannot reach: when
    that cluster's region comes back, its agents still read "primary" in their own etcd.
    Before they act as a primary cluster they ask the others: one that is primary with a
    newer epoch than theirs wins, and they become its standby (rejoining through
    pg_rewind). An unreachable peer changes nothing: local failover never waits on
    another region. `rounds` counts the rounds done (the agent waits for the first).
    """

    def __init__(self, peers: Sequence[PeerCluster], tls: EtcdTls | None, interval: float) -> None:
        self.peers = tuple(peers)
        self.interval = interval
        # Short: a peer region that is cut off costs one round this long, not the loop.
        self._settings = DCSSettings(tls=tls, request_timeout=0.5, retry_timeout=1.0)
        self.claims: dict[str, int] = {}  # peer -> epoch, for the peers that say "primary"
        self.rounds = 0
        self.round_done = asyncio.Event()

    def newer_primary(self, epoch: int) -> tuple[str, int] | None:
        """The peer that says it is primary with an epoch above `epoch`, if any."""
        best = max(self.claims.items(), key=lambda kv: kv[1], default=None)
        return best if best is not None and best[1] > epoch else None

    async def first_round(self, bound: float = 5.0) -> None:
        """Wait for one round of answers before acting as a primary cluster (bounded: an
        unreachable region must not hold up a local start)."""
        if self.peers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await self.round_done.wait()

    async def apply(
        self, name: str, store: KeyValueStore, prefix: str, state: ClusterState
    ) -> ClusterState:
        """`state` (of a cluster that says it is primary) made a standby of the peer that
        says it is the primary with a newer epoch, recorded in its own etcd; else as is."""
        newer = self.newer_primary(state.standby_epoch)
        if newer is None:
            return state
        peer, epoch = newer
        logger.warning(
            "%s: %s says it is the primary cluster (epoch %d, mine %d): it was promoted "
            "while this cluster was cut off; this cluster becomes its standby",
            name,
            peer,
            epoch,
            state.standby_epoch,
        )
        with contextlib.suppress(DCSError):
            await store.put(f"{prefix}/standby", json.dumps({"of": peer, "epoch": epoch}))
        return dataclasses.replace(state, standby_of=peer, standby_epoch=epoch)

    async def run(self) -> None:
        stores = {p.name: EtcdStore(list(p.endpoints), self._settings) for p in self.peers}
        try:
            while True:
                for p in self.peers:
                    claim = await self._ask(stores[p.name], p)
                    if claim is None:
                        continue  # unreachable: keep what we knew
                    if claim < 0:
                        self.claims.pop(p.name, None)
                    else:
                        self.claims[p.name] = claim
                self.rounds += 1
                self.round_done.set()
                await asyncio.sleep(self.interval)
        finally:
            for s in stores.values():
                with contextlib.suppress(Exception):
                    await s.close()

    async def _ask(self, store: EtcdStore, p: PeerCluster) -> int | None:
        """The peer's epoch when it says it is primary, -1 when not, None: unreachable."""
        try:
            async with asyncio.timeout(2.0):
                res = await store.range(f"{p.prefix}/standby")
        except (DCSError, TimeoutError, OSError):
            return None
        if not res.kvs:
            return -1  # the topology's: a standby never claims without the key
        try:
            d = json.loads(res.kvs[0].value)
            return -1 if d.get("of") else int(d.get("epoch", 0))
        except (ValueError, TypeError, AttributeError):
            return None
