"""The PostgreSQL HA agent: observe (etcd + local PostgreSQL) -> decide -> act, in a loop.

Keys under the cluster prefix P (all JSON except the leader key):

    P/leader            the member name; the election key (fencing token = create revision)
    P/initialize        the system identifier of the bootstrapped cluster
    P/members/<name>    each member's published MemberStatus, on the member's own lease
    P/optime            the leader's last WAL position (fenced write)
    P/sync              the leader's SyncState (fenced write)
    P/config            {"paused": bool}
    P/switchover        {"leader": name|null, "candidate": name|null}: an operator's request

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
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from spofless.dcs import (
    Compare,
    DCSError,
    DCSSettings,
    DCSUnavailable,
    Delete,
    KeyValueStore,
    Leadership,
    LeaseNotFound,
    Op,
    Put,
    campaign,
)
from spofless.pg._errors import PgCommandError
from spofless.pg._handover import hand_over
from spofless.pg._keys import parse_cluster
from spofless.pg._terms import degraded_json, history_json, next_degraded
from spofless.pg.api import ApiServer, ApiSnapshot, MemberStatus
from spofless.pg.decide import decide
from spofless.pg.server import PostgresServer, ServerSettings, Upstream, slot_name
from spofless.pg.sync import NO_STANDBY, StandbyRow, plan_sync, standby_names
from spofless.pg.view import (
    Action,
    ClusterState,
    Decision,
    Lease,
    LocalState,
    Policy,
    Role,
    View,
)
from spofless.pg.witness import WITNESS_NAME, FenceWitness, witness_standby_names

logger = logging.getLogger(__name__)

# Actions that take long: the member says what it does before it starts.
_LONG_ACTIONS = frozenset(
    {Action.BOOTSTRAP, Action.CLONE, Action.REWIND, Action.RECLONE, Action.RECOVER}
)
_BUSY = {
    Action.BOOTSTRAP: "bootstrapping",
    Action.CLONE: "cloning",
    Action.REWIND: "rewinding",
    Action.RECLONE: "re-cloning",
    Action.RECOVER: "recovering",
}

# Actions after which this member's role has changed: observe again at once.
_ROLE_CHANGES = frozenset(
    {Action.BOOTSTRAP, Action.START_PRIMARY, Action.PROMOTE, Action.DEMOTE, Action.SWITCHOVER}
)


class AgentSettings(BaseModel):
    """One agent: its member, its cluster's prefix, its API, the failover policy, timings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str  # e.g. /spofless/<topology>/<component>
    server: ServerSettings
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=0, le=65535)] = 0
    synchronous: bool = False
    strict: bool = False
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = 1024 * 1024
    allow_reclone: bool = False
    # Diverged data directories kept aside by re-clones (never deleted by spofless).
    keep_old_data: Annotated[int, Field(ge=1)] = 2
    loop_wait: Annotated[float, Field(gt=0)] = 0.5
    # Commits wait for a witness in this agent that acknowledges only while the lease is
    # valid (spofless.pg.witness): a primary frozen past the ttl cannot acknowledge a
    # commit when it wakes. Off only to measure what it costs.
    fence_witness: bool = True
    dcs: DCSSettings = DCSSettings(ttl=3, renew_interval=0.5, retry_timeout=0.5)

    @property
    def name(self) -> str:
        return self.server.name

    def policy(self) -> Policy:
        return Policy(
            synchronous=self.synchronous,
            strict=self.strict,
            maximum_lag_on_failover=self.maximum_lag_on_failover,
            allow_reclone=self.allow_reclone,
        )


class Agent:
    """Runs one member. `run()` until cancelled; `status` is what the API serves."""

    def __init__(self, settings: AgentSettings, store: KeyValueStore) -> None:
        self.settings = settings
        self.store = store
        self.name = settings.name
        self.server = PostgresServer(settings.server)
        self.p = settings.prefix.rstrip("/")
        self.leadership: Leadership | None = None
        self.api = ApiServer(self.name, self.snapshot)
        self._wake = asyncio.Event()
        self._member_lease = 0
        self._rewind_failed = False
        self._start_failures = 0
        self._replica_start_failures = 0
        self._system_id: str | None = None  # of the local data directory, read once
        self._not_streaming_since: float | None = None
        self._view: View | None = None
        self._local_status: MemberStatus = MemberStatus(self.name)
        self._cluster_members: tuple[MemberStatus, ...] = ()
        self.last_decision: Decision | None = None
        self._witness: FenceWitness | None = None
        self._degraded = False  # synchronous mode fell back to asynchronous (leader only)
        self._witness_task: asyncio.Task[None] | None = None
        # The last WAL position a synchronous standby was seen to hold (this term).
        self._sync_held: int | None = None

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.api.start(self.settings.api_host, self.settings.api_port)
        watcher = asyncio.create_task(self._watch_leader())
        try:
            while True:
                # Cleared before observing: a wake-up set while acting (a lease won, a
                # leader key changed) starts the next loop at once.
                self._wake.clear()
                view = await self._observe()
                decision = decide(view)
                self.last_decision = decision
                logger.info("%s: %s", self.name, decision.reason)
                if decision.action in _LONG_ACTIONS:
                    await self._publish(view, busy=decision.action)  # say so before it starts
                try:
                    await self._act(view, decision)
                except (PgCommandError, DCSError) as exc:
                    logger.warning("%s: %s failed: %s", self.name, decision.action, exc)
                else:
                    if decision.action in _ROLE_CHANGES:
                        # Observe the new role at once: the API (and load balancers
                        # routing by it) should not lag a loop behind a promotion.
                        self._wake.set()
                await self._publish(view)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.loop_wait)
        finally:
            watcher.cancel()
            self._stop_witness()
            await self.api.close()
            # Writes stop before the lease is freed: never two writable primaries.
            await self.server.stop("fast")
            await self._release()

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

    async def _observe(self) -> View:
        loop = asyncio.get_running_loop()
        local = await self._observe_local(loop.time())
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
        view = View(self.name, local, lease, cluster, self.settings.policy(), loop.time())
        self._view = view
        return view

    async def _observe_local(self, now: float) -> LocalState:
        srv = self.server
        if not srv.has_data():
            self._system_id = None
            return LocalState(has_data=False)
        if self._system_id is None:
            with contextlib.suppress(PgCommandError):
                self._system_id = (await srv.controldata()).system_identifier
        if not srv.running:
            disk = None
            with contextlib.suppress(PgCommandError):
                disk = await srv.disk()
            return LocalState(
                has_data=True,
                was_primary=await srv.was_primary(),
                rewind_failed=self._rewind_failed,
                start_failures=self._start_failures,
                replica_start_failures=self._replica_start_failures,
                system_id=self._system_id,
                disk=disk,
                rewinding=srv.rewinding,
                reclone_blocked=(
                    srv.reclone_blocked(self.settings.keep_old_data)
                    if self._rewind_failed
                    else None
                ),
            )
        try:
            st = await srv.status()
        except PgCommandError:
            return LocalState(has_data=True, running=True, rewind_failed=self._rewind_failed)
        timeline, replay_timeline = st.timeline, None
        if st.role is Role.REPLICA:
            # What PostgreSQL reports lags behind a timeline switch: read the timeline
            # from the WAL files the replica replays (spofless.pg.server.timeline_at).
            replay_timeline = await asyncio.to_thread(
                srv.timeline_at, st.replayed_lsn, st.segment_size
            )
            received = await asyncio.to_thread(srv.timeline_at, st.wal_position, st.segment_size)
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
            rewind_failed=self._rewind_failed,
            start_failures=self._start_failures,
            system_id=self._system_id,
            recovery_timeline=replay_timeline or st.recovery_timeline,
            recovery_position=st.replayed_lsn if replay_timeline else st.recovery_lsn,
        )

    async def _read_cluster(self) -> ClusterState:
        res = await self.store.range(f"{self.p}/", prefix=True)
        state, self._cluster_members = parse_cluster(self.p, res.kvs)
        return state

    # -- acting ---------------------------------------------------------------------------

    def _upstream(self, view: View, name: str | None) -> Upstream | None:
        if name is None:
            return None
        for m in self._cluster_members:
            if m.name == name and m.host and m.port:
                return Upstream(name, m.host, m.port)
        raise PgCommandError(f"{self.name}: no address published for {name}")

    async def _act(self, view: View, d: Decision) -> None:
        srv, a = self.server, d.action
        if a is Action.ACQUIRE:
            await self._acquire()
        elif a is Action.BOOTSTRAP:
            await self._bootstrap()
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
            self._sync_held = view.local.wal_position  # all before is on the old timeline
            # Commits must not be acknowledged unfenced between the promotion and the
            # first leader duties: they wait for the fence (witness or sync replica).
            await srv.set_synchronous_standby_names(self._promotion_fence())
            await srv.promote()
            await self._leader_duties(view)
        elif a is Action.DEMOTE:
            self._stop_witness()
            await srv.stop("immediate")
            await self._release()
        elif a is Action.RENEW:
            await self._leader_duties(view)
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
                except PgCommandError:
                    self._rewind_failed = True
                    raise
            else:
                await srv.keep_aside_and_clone(up, self.settings.keep_old_data)
                self._system_id = None
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
            self._stop_witness()
            key = f"{self.p}/switchover"
            if await hand_over(srv, self.store, self._fence(), key, self._need(view, d.target)):
                await self._release()

    async def _bootstrap(self) -> None:
        """initdb under a claim: the initialize key is created first (fenced), so that a
        member winning the lease while this one runs initdb waits instead of bootstrapping
        a second cluster; it holds the system identifier once the server runs."""
        srv, key = self.server, f"{self.p}/initialize"
        claim = await self.store.txn(
            [self._fence(), Compare.create_revision(key, "==", 0)], [Put(key, "")]
        )
        if not claim.succeeded:
            raise PgCommandError(f"{self.name}: lost the lease or another member bootstraps")
        try:
            await srv.initdb()
            await srv.start(standby=False)
            system_id = (await srv.controldata()).system_identifier or ""
        except BaseException:
            with contextlib.suppress(DCSError):
                await self.store.txn([self._fence()], [Delete(key)])
            raise
        self._system_id = system_id
        await self.store.txn([self._fence()], [Put(key, system_id)])

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
        self._stop_witness()
        self._wake.set()

    async def _release(self) -> None:
        self._stop_witness()
        if self.leadership is not None:
            lead, self.leadership = self.leadership, None
            await lead.resign()

    def _fence(self) -> Any:
        assert self.leadership is not None
        return self.leadership.fence()

    async def _leader_duties(self, view: View) -> None:
        """Slots for every other member, the optime, the timeline history, synchronous
        standbys and degraded ranges (fenced writes, before the settings they cover)."""
        c, srv = view.cluster, self.server
        if c is None or self.leadership is None:
            return
        fenced = self._fence_ready()  # first: commits after a promotion wait for it
        others = [m for m in c.members if m != self.name]
        await srv.create_slots([slot_name(m) for m in others])
        st = await srv.status()
        rows = [
            StandbyRow(r.name, r.state, r.sync_state, r.flush_lsn)
            for r in st.replication
            if r.name != WITNESS_NAME
        ]
        for row in st.replication:  # what the synchronous standby holds for certain
            if row.name in c.sync.members and row.sync_state == "sync" and row.flush_lsn:
                self._sync_held = max(self._sync_held or 0, row.flush_lsn)
        plan = plan_sync(self.name, view.policy, c.sync, rows, st.wal_position)
        ops: list[Op] = [Put(f"{self.p}/optime", str(st.wal_position or 0))]
        if plan.record is not None:
            r = plan.record
            record = {
                "leader": r.leader,
                "members": sorted(r.members),
                "pending": r.pending,
                "pending_lsn": r.pending_lsn,
            }
            ops.append(Put(f"{self.p}/sync", json.dumps(record)))
        if st.timeline is not None:
            if c.history is None or c.history.timeline != st.timeline:
                ops.append(Put(f"{self.p}/history", history_json(srv.history(st.timeline))))
            if view.policy.synchronous:
                pos = st.wal_position or 0
                ranges = next_degraded(
                    c.degraded,
                    leader=self.name,
                    timeline=st.timeline,
                    degraded=plan.degraded,
                    start=self._sync_held if self._sync_held is not None else pos,
                    position=pos,
                )
                if ranges is not None:
                    ops.append(Put(f"{self.p}/degraded", degraded_json(ranges)))
        if c.system_id is None and self._system_id:  # a bootstrap cut short by a lease loss
            ops.append(Put(f"{self.p}/initialize", self._system_id))
        if c.switchover is not None and c.switchover.leader != self.name:
            ops.append(Delete(f"{self.p}/switchover"))  # done: I lead now
        res = await self.store.txn([self._fence()], ops)
        if not res.succeeded:
            raise PgCommandError(f"{self.name}: leader key no longer mine; not writing")
        names = plan.standby_names
        if not names:
            if fenced or self._fence_ready():
                # No synchronous replica fences this primary: the witness does.
                names = witness_standby_names()
            elif srv.synchronous_standby_names == standby_names(NO_STANDBY):
                names = srv.synchronous_standby_names  # commits wait until the witness streams
        await srv.set_synchronous_standby_names(names)
        self._degraded = plan.degraded
        if plan.degraded:
            logger.warning("%s: %s", self.name, plan.reason)

    def _fence_ready(self) -> bool:
        """Start the witness if needed; whether it streams (only then may commits wait on it)."""
        if not self.settings.fence_witness:
            return False
        if self._witness_task is None or self._witness_task.done():
            s = self.settings.server
            self._witness = FenceWitness(self.name, s.host, s.port, self._may_acknowledge)
            self._witness_task = asyncio.create_task(
                self._witness.run(), name=f"fence witness {self.name}"
            )
        assert self._witness is not None
        # Once it has streamed, it stays named even while it reconnects: commits wait.
        named = self.server.synchronous_standby_names == witness_standby_names()
        return named or self._witness.streaming.is_set()

    def _promotion_fence(self) -> str:
        """Until the first leader loop has recorded the synchronous state: synchronous mode
        waits for a standby (a degraded term must be recorded before it acknowledges
        alone); asynchronous mode for the witness."""
        if self.settings.synchronous:
            return standby_names(NO_STANDBY)
        return witness_standby_names() if self.settings.fence_witness else ""

    def _may_acknowledge(self) -> bool:
        lead = self.leadership
        return lead is not None and lead.is_leader

    def _stop_witness(self) -> None:
        if self._witness_task is not None:
            self._witness_task.cancel()
            self._witness_task = None

    async def _publish(self, view: View, busy: Action | None = None) -> None:
        """Put this member's status on its own lease (it vanishes when the agent dies)."""
        local, s = view.local, self.settings.server
        lag = None
        if view.cluster and view.cluster.leader_wal_position and local.wal_position:
            lag = max(0, view.cluster.leader_wal_position - local.wal_position)
        d = self.last_decision
        state, reason = _state_of(local, d, busy)
        self._local_status = MemberStatus(
            name=self.name,
            running=local.running,
            role=local.role,
            leader=view.lease.held,
            timeline=local.timeline,
            wal_position=local.wal_position,
            lag=0 if local.role is Role.PRIMARY else lag,
            streaming=local.streaming,
            state=state,
            api_url=f"http://{self.settings.api_host}:{self.api.port}",
            dsn=f"host={s.host} port={s.port} user=postgres dbname=postgres",
            host=s.host,
            port=s.port,
            reason=reason,
            not_streaming_for=(
                round(local.not_streaming_for, 1)
                if local.running and local.role is Role.REPLICA and not local.streaming
                else None
            ),
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
        return ApiSnapshot(
            me=me,
            members=self._cluster_members,
            leader=c.leader.name if c and c.leader else None,
            paused=c.paused if c else False,
            synchronous=c.sync.members if c else frozenset(),
            degraded=self._degraded and self._may_acknowledge(),
        )


def _state_of(local: LocalState, d: Decision | None, busy: Action | None) -> tuple[str, str | None]:
    """The one-word state a member publishes, and why it is not doing its job."""
    if busy is not None:
        return _BUSY[busy], d.reason if d else None
    if d is not None and d.failed:
        return "failed", d.reason
    if not local.running:
        return "stopped", d.reason if d else None
    if local.role is Role.REPLICA and not local.streaming:
        return "not streaming", d.reason if d else None
    if local.role is Role.REPLICA:
        return "streaming", None
    return "running", None
