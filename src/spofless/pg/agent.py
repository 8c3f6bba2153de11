"""The PostgreSQL HA agent: observe (etcd + local PostgreSQL) -> decide -> act, in a loop.

The cluster's keys in etcd are listed in spofless.pg._keys.

Each loop logs one line naming the instance. Long actions run as one task;
the leader lease keeps renewing on its own task meanwhile, and losing it stops
a writable PostgreSQL at once (immediate stop from the lost callback) before
the loop even wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any

from spofless.dcs import (
    DCSError,
    DCSUnavailable,
    KeyValueStore,
    Leadership,
    LeaseNotFound,
    Put,
    campaign,
)
from spofless.pg._agent_model import LONG_ACTIONS, AgentSettings, member_status
from spofless.pg._errors import PgCommandError
from spofless.pg._handover import bootstrap, hand_over, step_down
from spofless.pg._keys import parse_cluster
from spofless.pg._leader import LeaderDuties
from spofless.pg._observe import LocalObserver
from spofless.pg._remote import PeerClaims, PeerCluster, RemoteProbe
from spofless.pg._server_model import standby_slot
from spofless.pg.api import ApiServer, ApiSnapshot, MemberStatus
from spofless.pg.decide import decide
from spofless.pg.drill_records import DrillSummaryCache, drill_metrics
from spofless.pg.region_lease import RegionLease
from spofless.pg.rejoin import possibly_lost
from spofless.pg.server import PostgresServer, Upstream
from spofless.pg.view import (
    Action,
    ClusterState,
    Decision,
    Lease,
    LostRange,
    Role,
    View,
)

__all__ = ["Agent", "AgentSettings"]

logger = logging.getLogger(__name__)

# Actions after which this member's role has changed: observe again at once.
_ROLE_CHANGES = frozenset(
    {
        Action.BOOTSTRAP,
        Action.START_PRIMARY,
        Action.PROMOTE,
        Action.DEMOTE,
        Action.SWITCHOVER,
        Action.STEP_DOWN,
    }
)


class Agent:
    """Runs one member. `run()` until cancelled; `status` is what the API serves."""

    def __init__(
        self,
        settings: AgentSettings,
        store: KeyValueStore,
        server: PostgresServer | None = None,
    ) -> None:
        """`store` and `server` are given by tests of the loop (MemoryStore, a fake
        server); by default the server is the real local PostgreSQL."""
        self.settings = settings
        self.store = store
        self.name = settings.name
        self.server = server if server is not None else PostgresServer(settings.server)
        self.local = LocalObserver(self.server, settings.keep_old_data)
        self.p = settings.prefix.rstrip("/")
        self.leadership: Leadership | None = None
        self.api = ApiServer(self.name, self.snapshot)
        self._wake = asyncio.Event()
        self._member_lease = 0
        self._rewind_failed = False
        self._start_failures = 0
        self._replica_start_failures = 0
        self._stopping: asyncio.Task[None] | None = None  # the stop after a lost lease
        self._view: View | None = None
        self._local_status: MemberStatus = MemberStatus(self.name)
        self._cluster_members: tuple[MemberStatus, ...] = ()
        self.last_decision: Decision | None = None
        self._drills = (  # the newest restore drill, served at /status and /metrics
            DrillSummaryCache(settings.backup_state_dir, settings.cluster or "")
            if settings.backup_state_dir is not None
            else None
        )
        self.duties = LeaderDuties(
            self.name,
            self.server,
            store,
            self.p,
            self._may_acknowledge,
            synchronous=settings.synchronous,
            fence_witness=settings.fence_witness,
            standby_slots=[standby_slot(p) for p in settings.peers],
            peer_prefixes=[f"{p}-" for p in settings.peers],
            region_fence=settings.region is not None,
        )
        # The read-write member of the cluster this one copies, when it is a standby.
        self.remote = RemoteProbe(self.name, self.server, settings.loop_wait)
        # Which other cluster of the group says it is the primary (after a forced
        # promote-region this cluster's own etcd may still say it is).
        peers = [PeerCluster(n, e, p) for n, (e, p) in settings.peer_etcd.items()]
        self.claims = PeerClaims(peers, settings.dcs.tls, max(1.0, 2 * settings.loop_wait))
        # The group's region lease in its quorum etcd (auto_promote), spofless.pg._region.
        self.region = (
            RegionLease(
                self.name,
                settings.cluster,
                settings.region,
                settings.loop_wait,
                tls=settings.dcs.tls,
                on_change=self._wake.set,
            )
            if settings.region is not None and settings.cluster
            else None
        )
        # The long action running as one task (clone, rewind, ...), and which it is.
        self._busy: asyncio.Task[None] | None = None
        self._busy_action: Action | None = None

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.api.start(self.settings.api_host, self.settings.api_port)
        watcher = asyncio.create_task(self._watch_leader())
        prober = asyncio.create_task(self.remote.run(), name=f"{self.name} remote probe")
        claims = asyncio.create_task(self.claims.run(), name=f"{self.name} peer claims")
        region = (
            asyncio.create_task(self.region.run(), name=f"{self.name} region lease")
            if self.region is not None
            else None
        )
        await self.claims.first_round()
        me = asyncio.current_task()
        try:
            while True:
                if me is not None and me.cancelling():
                    # A cancellation a library swallowed (one that lands as an awaited
                    # call completes can be lost): stop anyway, or the agent outlives
                    # its stop and its PostgreSQL with it.
                    raise asyncio.CancelledError
                # Cleared before observing: a wake-up set while acting (a lease won, a
                # leader key changed) starts the next loop at once.
                self._wake.clear()
                # Whether a long action runs is read once, before observing: a view
                # observed while it ran holds its stale local state even if it ends
                # during the observation, and is never decided on (it would clone a
                # second time over the clone that just finished).
                busy = self._busy is not None and not self._busy.done()
                view = await self._observe(busy)
                if busy:
                    # A long action runs as one task: keep observing and publishing
                    # (the member's key lives on a short lease), decide nothing else.
                    # When it ends it sets the wake-up, so the next loop starts at once.
                    await self._publish(view, busy=self._busy_action)
                else:
                    await self._finish_busy()
                    await self._loop_once(view)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.loop_wait):
                        await self._wake.wait()
        finally:
            watcher.cancel()
            prober.cancel()
            claims.cancel()
            if region is not None:
                region.cancel()
            if self._busy is not None:
                self._busy.cancel()
                with contextlib.suppress(BaseException):
                    await self._busy
            self.duties.stop_witness()
            await self.api.close()
            # Writes stop before the lease is freed: never two writable primaries.
            await self.server.stop("fast")
            await self._release()

    async def _loop_once(self, view: View) -> None:
        decision = decide(view)
        self.last_decision = decision
        logger.info("%s: %s", self.name, decision.reason)
        if decision.action in LONG_ACTIONS:
            self._busy_action = decision.action
            self._busy = asyncio.create_task(
                self._act_then_wake(view, decision), name=f"{self.name} {decision.action}"
            )
            await self._publish(view, busy=decision.action)  # say so before it starts
            return
        try:
            await self._act(view, decision)
        except (PgCommandError, DCSError) as exc:
            logger.warning("%s: %s failed: %s", self.name, decision.action, exc)
        else:
            if decision.action in _ROLE_CHANGES:
                # Observe the new role at once: the API (and load balancers routing by
                # it) should not lag a loop behind a promotion.
                self._wake.set()
        await self._publish(view)

    async def _act_then_wake(self, view: View, decision: Decision) -> None:
        try:
            await self._act(view, decision)
        finally:
            self._wake.set()  # decide again at once: what follows a clone or a rewind

    async def _finish_busy(self) -> None:
        """Collect a finished long action: log its failure, wake for what follows."""
        task, self._busy = self._busy, None
        if task is None:
            return
        try:
            await task
        except (PgCommandError, DCSError) as exc:
            logger.warning("%s: %s failed: %s", self.name, self._busy_action, exc)
        self._busy_action = None

    async def _watch_leader(self) -> None:
        """Wake the loop at once when the leader key changes (a failover starts there)."""
        while True:
            try:
                async with await self.store.watch(f"{self.p}/leader") as w:
                    async for _ in w:
                        self._wake.set()
            except DCSError:
                await asyncio.sleep(self.settings.loop_wait)

    # -- observing ------------------------------------------------------------------------

    async def _observe(self, busy: bool = False) -> View:
        loop = asyncio.get_running_loop()
        if busy and self._view is not None:
            # A long action is changing the data directory: what is on disk now is
            # half made (initdb, a clone, a rewind); keep the last local state.
            local = self._view.local
        else:
            local = await self.local.observe(
                loop.time(),
                rewind_failed=self._rewind_failed,
                start_failures=self._start_failures,
                replica_start_failures=self._replica_start_failures,
            )
        cluster: ClusterState | None
        try:
            cluster = await self._read_cluster()
        except DCSUnavailable:
            cluster = None
        lead = self.leadership
        held = lead is not None and lead.is_leader
        lease = Lease(
            held=held,
            token=lead.fencing_token if lead and held else None,
            valid_for=max(0.0, lead.valid_until - loop.time()) if lead and held else 0.0,
        )
        # A standby cluster's leader (or a member that may become it) probes the cluster
        # it copies; nobody else does.
        source = cluster.standby_of if cluster is not None else None
        known = source is not None and source in self.settings.peers
        self.remote.follow(self._upstream_of_cluster(source) if source and known else None)
        view = View(
            self.name,
            local,
            lease,
            cluster,
            self.settings.policy(),
            loop.time(),
            remote=self.remote.latest(loop.time()),
            region=(
                self.region.observe(cluster, held, local, loop.time())
                if self.region is not None
                else None
            ),
        )
        self._view = view
        return view

    async def _read_cluster(self) -> ClusterState:
        res = await self.store.range(f"{self.p}/", prefix=True)
        state, self._cluster_members = parse_cluster(self.p, res.kvs, self.settings.standby_of)
        if state.standby_of is None:
            state = await self.claims.apply(self.name, self.store, self.p, state)
        if self.region is not None:
            state = await self.region.apply(self.store, self.p, state)
        return state

    # -- acting ---------------------------------------------------------------------------

    def _upstream_of_cluster(self, cluster: str) -> Upstream:
        """The read-write route to the members of `cluster`, through my cluster's slot."""
        members = self.settings.peers.get(cluster)
        if not members:
            raise PgCommandError(f"{self.name}: {cluster} is not a cluster of my group")
        return Upstream.route(cluster, members, standby_slot(self.settings.cluster or ""))

    def _upstream(self, view: View, name: str | None) -> Upstream | None:
        if name is None:
            return None
        if view.cluster is not None and name == view.cluster.standby_of:
            return self._upstream_of_cluster(name)
        for m in self._cluster_members:
            if m.name == name and m.host and m.port:
                return Upstream(name, m.host, m.port)
        raise PgCommandError(f"{self.name}: no address published for {name}")

    async def _act(self, view: View, d: Decision) -> None:
        srv, a = self.server, d.action
        if a is Action.ACQUIRE:
            await self._acquire()
        elif a is Action.BOOTSTRAP:
            await self._bootstrap(self._upstream(view, d.target))
        elif a is Action.CLONE:
            await srv.clone(self._need(view, d.target))
            await self._start_replica(self._upstream(view, d.target))
        elif a is Action.START_PRIMARY:
            try:
                await srv.start(standby=False)
                self._start_failures = 0
            except PgCommandError:
                self._start_failures += 1
                raise
        elif a is Action.START_REPLICA:
            await self._start_replica(self._upstream(view, d.target))
        elif a is Action.PROMOTE:
            self.duties.promoted(view.local.wal_position, self._lost_by_promotion(view))
            # Commits must not be acknowledged unfenced between the promotion and the
            # first leader duties: they wait for the fence (witness or sync replica).
            await srv.set_synchronous_standby_names(self.duties.promotion_fence())
            await srv.promote()
            await self.duties.run(view, self._fence(), self.local.system_id)
        elif a is Action.DEMOTE:
            self.duties.stop_witness()
            await srv.stop("immediate")
            await self._release()
        elif a is Action.RENEW and view.cluster is not None and view.cluster.standby_of:
            await self.duties.run_standby(view, self._fence())
        elif a is Action.RENEW:
            await self.duties.run(view, self._fence(), self.local.system_id)
        elif a is Action.STEP_DOWN:
            self.duties.stop_witness()
            await step_down(srv, self.store, self._fence(), f"{self.p}/demoted", self.name)
        elif a is Action.FOLLOW:
            await srv.follow(self._upstream(view, d.target))
        elif a is Action.RECOVER:
            await srv.crash_recover()
        elif a in (Action.REWIND, Action.RECLONE):
            await srv.stop("fast")
            up = self._need(view, d.target)
            if a is Action.REWIND:
                # pg_rewind reads the source's timeline from its control file, which a fresh
                # promotion updates only at its next checkpoint.
                await srv.query("CHECKPOINT", on=up, limit=srv.settings.tool_timeout)
                try:
                    await srv.rewind(up)
                except PgCommandError as exc:
                    # A source that went away mid-way (a primary region that stepped down
                    # and came back): run it again once the source answers.
                    if not srv.rewind_source_lost(str(exc)):
                        self._rewind_failed = True
                    raise
            else:
                await srv.keep_aside_and_clone(up, self.settings.keep_old_data)
                self.local.system_id = None
            self._replica_start_failures = 0
            try:
                await self._start_replica(up)
            except PgCommandError:
                self._rewind_failed = True  # the rejoined directory cannot start as it is
                raise
            self._rewind_failed = False
            if view.cluster is not None and self.name in view.cluster.discard:
                await self.store.delete(f"{self.p}/discard/{self.name}")
        elif a is Action.RELEASE:
            await self._release()
        elif a is Action.SWITCHOVER:
            self.duties.stop_witness()
            key = f"{self.p}/switchover"
            if await hand_over(srv, self.store, self._fence(), key, self._need(view, d.target)):
                await self._release()

    async def _bootstrap(self, source: Upstream | None = None) -> None:
        key = f"{self.p}/initialize"
        self.local.system_id = await bootstrap(self.server, self.store, self._fence(), key, source)
        await self.store.txn([self._fence()], [Put(key, self.local.system_id)])

    async def _start_replica(self, upstream: Upstream | None) -> None:
        try:
            await self.server.start(upstream=upstream)
        except PgCommandError:
            self._replica_start_failures += 1
            raise
        self._replica_start_failures = 0

    def _need(self, view: View, name: str | None) -> Upstream:
        up = self._upstream(view, name)
        if up is None:
            raise PgCommandError(f"{self.name}: no member to act from")
        return up

    async def _acquire(self) -> None:
        try:
            async with asyncio.timeout(self.settings.dcs.retry_timeout * 2):
                lead = await campaign(self.store, f"{self.p}/leader", self.name, self.settings.dcs)
        except TimeoutError:
            return
        self.leadership = lead
        lead.add_lost_callback(self._on_lost)
        self._wake.set()

    def _on_lost(self, reason: str) -> None:
        # Fail closed first, think later: a primary without the lease stops writes now.
        if self.server.running and self._local_status.role is Role.PRIMARY:
            logger.warning("%s: lease lost (%s): stopping PostgreSQL now", self.name, reason)
            self.server.signal_stop("immediate")
            # And make sure it ends: a stop that hangs is turned into a SIGKILL.
            self._stopping = asyncio.get_running_loop().create_task(
                self.server.stop("immediate"), name=f"{self.name} fencing stop"
            )
        self.duties.stop_witness()
        self._wake.set()

    async def _release(self) -> None:
        self.duties.stop_witness()
        if self.leadership is not None:
            lead, self.leadership = self.leadership, None
            await lead.resign()

    def _fence(self) -> Any:
        assert self.leadership is not None
        return self.leadership.fence()

    def _lost_by_promotion(self, view: View) -> list[LostRange]:
        """What of the previous degraded term this member lacks, said loudly."""
        c, local = view.cluster, view.local
        if c is None or not view.policy.synchronous or local.timeline is None:
            return []
        lost = possibly_lost(
            c.degraded, local.timeline, local.wal_position or 0, c.leader_wal_position
        )
        for r in lost:
            logger.warning(
                "%s: promoted after a degraded term: commits acknowledged in %s may be lost "
                "(no member holds them)",
                self.name,
                r,
            )
        return lost

    def _may_acknowledge(self) -> bool:
        lead, region = self.leadership, self.region
        if region is not None and not region.may_write(asyncio.get_running_loop().time()):
            return False  # a primary without the region lease acknowledges no commit
        return lead is not None and lead.is_leader

    async def _publish(self, view: View, busy: Action | None = None) -> None:
        """Put this member's status on its own lease (it vanishes when the agent dies)."""
        self._local_status = member_status(
            self.settings, view, self.last_decision, busy, self.api.port
        )
        try:
            if not self._member_lease:
                self._member_lease = (await self.store.grant_lease(self.settings.dcs.ttl)).id
            else:
                await self.store.keepalive(self._member_lease)
            await self.store.put(
                f"{self.p}/members/{self.name}",
                json.dumps(self._local_status.to_json()),
                lease=self._member_lease,
            )
        except LeaseNotFound:
            self._member_lease = 0
        except DCSError as exc:
            logger.warning("%s: cannot publish member state: %s", self.name, exc)

    def snapshot(self) -> ApiSnapshot:
        """What the API serves. Whether PostgreSQL runs and whether the lease holds are read
        when the request arrives, not at the last loop: a node woken from SIGSTOP, or whose
        postmaster just died, must not answer /primary with 200 until its loop runs."""
        c = self._view.cluster if self._view else None
        me = dataclasses.replace(
            self._local_status,
            running=self._local_status.running and self.server.running,
            leader=self._local_status.leader and self._may_acknowledge(),
        )
        drill = self._drills.get() if self._drills is not None else None
        return ApiSnapshot(
            restore_drill=drill,
            drill_metrics=tuple(drill_metrics(drill, self.settings.cluster or "")),
            me=me,
            members=self._cluster_members,
            leader=c.leader.name if c and c.leader else None,
            paused=c.paused if c else False,
            synchronous=c.sync.members if c else frozenset(),
            degraded=self.duties.degraded and self._may_acknowledge(),
            possibly_lost=tuple(str(r) for r in c.lost) if c else (),
        )
