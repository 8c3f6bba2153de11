"""The region lease in the quorum etcd, held or watched on the agent's own task.

The rules are in spofless.pg._region; this is the I/O. Each round (every `interval`,
or at once when the agent changes what it wants) reads R/owner and R/lease, decides
with `region_step` and writes with one guarded transaction. The agent's loop never
waits on it: it reads `view(now)`, and the fence witness calls `valid(now)` before
every acknowledgement. A round is bounded (the quorum etcd client's retry timeout,
and a third of the ttl in all), so a cut-off quorum costs validity, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable

from spofless.dcs import (
    Compare,
    DCSError,
    DCSSettings,
    EtcdStore,
    EtcdTls,
    KeyValue,
    KeyValueStore,
    LeaseNotFound,
    Op,
    Put,
)
from spofless.pg._agent_model import RegionSettings
from spofless.pg._region import Claim, Mode, RegionView, Step, adopt, region_step
from spofless.pg.view import ClusterState, LocalState, Role

logger = logging.getLogger(__name__)


class RegionLease:
    """`want(mode, epoch)` each loop; `run()` until cancelled; `view(now)` and
    `valid(now)` read the state (now: the event loop's monotonic clock)."""

    def __init__(
        self,
        name: str,
        cluster: str,
        settings: RegionSettings,
        interval: float,
        *,
        tls: EtcdTls | None = None,
        store: KeyValueStore | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`store`: the quorum etcd (tests give a MemoryStore); `on_change` wakes the
        agent's loop (the region was taken, lost, or its margin is reached)."""
        self.name = name
        self.cluster = cluster
        self.settings = settings
        self.interval = interval
        # A round may take up to the margin (a third of the ttl): the quorum is across
        # regions, and a slow answer that comes is still a renewal (its validity counts
        # from its start); a member that does not answer costs half of that.
        retry = min(settings.margin, 30.0)
        self.store = store or EtcdStore(
            list(settings.endpoints),
            # ttl, renew_interval and safety_margin are the store's lease defaults, unused
            # here: this lease's timing is the region's own.
            DCSSettings(
                tls=tls,
                ttl=max(settings.ttl, 5),
                renew_interval=0.1,
                request_timeout=retry / 2,
                retry_timeout=retry,
                safety_margin=0.1,
            ),
        )
        self.on_change = on_change
        self.mode = Mode.IDLE
        self.epoch = 0  # this cluster's epoch (its P/standby), for a newer one to take
        self.owner: Claim | None = None
        self.valid_until = 0.0
        self._wanted_since: float | None = None
        self._lease_id = 0
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.rounds = 0

    # -- what the agent reads and says -------------------------------------------------

    def want(self, mode: Mode, epoch: int, now: float) -> None:
        if mode is Mode.HOLD and self._wanted_since is None:
            self._wanted_since = now
        elif mode is not Mode.HOLD:
            self._wanted_since = None
        if mode is Mode.IDLE:
            self.valid_until = 0.0  # never held across a break: it is taken anew
        if mode != self.mode:
            logger.info("%s: region lease: %s -> %s", self.name, self.mode, mode)
            self.mode = mode
            self._wake.set()
        self.epoch = epoch

    def observe(
        self, cluster: ClusterState | None, leader: bool, local: LocalState, now: float
    ) -> RegionView:
        """Say what to do from this loop's view, and return the region as it stands: the
        primary cluster's leader holds; a standby cluster's running leader with
        auto_promote watches to take over; everyone else is idle."""
        mode = Mode.IDLE
        if leader and cluster is None and self.mode is Mode.HOLD:
            mode = Mode.HOLD  # my cluster's etcd is unreachable, my leader lease not yet
        elif leader and cluster is not None and cluster.standby_of is None:
            mode = Mode.HOLD
        elif (
            leader
            and cluster is not None
            and self.settings.auto_promote
            and local.running
            and local.role is Role.REPLICA
        ):
            mode = Mode.TAKE
        self.want(mode, cluster.standby_epoch if cluster is not None else self.epoch, now)
        return self.view(now)

    async def apply(self, store: KeyValueStore, prefix: str, state: ClusterState) -> ClusterState:
        """`state` as the quorum's owner says when it is newer (rule 4), recorded in my
        cluster's own etcd (`P/standby`) for every member to read; else as it is."""
        got = adopt(self.cluster, state.standby_epoch, self.owner)
        if got is None:
            return state
        of, epoch = got
        logger.warning(
            "%s: the quorum says %s owns the region since epoch %d (mine %d): %s",
            self.name,
            self.owner.cluster if self.owner else "?",
            epoch,
            state.standby_epoch,
            f"this cluster becomes a standby of {of}" if of else "this cluster is the primary",
        )
        with contextlib.suppress(DCSError):
            await store.put(f"{prefix}/standby", json.dumps({"of": of, "epoch": epoch}))
        return dataclasses.replace(state, standby_of=of, standby_epoch=epoch)

    def valid(self, now: float) -> bool:
        return now < self.valid_until

    def may_write(self, now: float) -> bool:
        """Whether a primary of my cluster may acknowledge commits now: not while this
        member holds (or should hold) the region without a valid lease."""
        return self.mode is not Mode.HOLD or self.valid(now)

    def view(self, now: float) -> RegionView:
        return RegionView(
            valid_for=max(0.0, self.valid_until - now),
            wanted_for=now - self._wanted_since if self._wanted_since is not None else 0.0,
            margin=self.settings.margin,
            owner=self.owner,
            cluster=self.cluster,
        )

    # -- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                if self.mode is not Mode.IDLE:
                    try:
                        async with asyncio.timeout(self.settings.margin):
                            await self.round()
                    except (DCSError, TimeoutError, OSError) as exc:
                        logger.debug("%s: region lease round failed: %s", self.name, exc)
                    self.rounds += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            with contextlib.suppress(Exception):
                await self.store.close()

    async def round(self) -> None:
        """One read, one decision, at most one guarded write (see spofless.pg._region)."""
        loop = asyncio.get_running_loop()
        started = loop.time()  # before the keep-alive: etcd's deadline is no earlier
        alive = False
        if self.mode is Mode.HOLD and self._lease_id:
            try:
                await self.store.keepalive(self._lease_id)
                alive = True
            except LeaseNotFound:
                self._lease_id = 0
        p = self.settings.prefix
        res = await self.store.range(f"{p}/", prefix=True)
        kvs = {kv.key: kv for kv in res.kvs}
        owner_kv, lease_kv = kvs.get(f"{p}/owner"), kvs.get(f"{p}/lease")
        owner = Claim.parse(owner_kv.value) if owner_kv else None
        lease = Claim.parse(lease_kv.value) if lease_kv else None
        if owner != self.owner:
            logger.info("%s: the quorum says the region's owner is %s", self.name, owner)
            self.owner = owner
            self.on_change()
        step, why = region_step(self.cluster, self.mode, self.epoch, owner, lease)
        if step is Step.WAIT:
            if self.mode is Mode.HOLD:
                self._lapse(why)
            return
        if step is Step.REFRESH and alive and lease_kv is not None and self._mine(lease_kv):
            self._held_from(started)
            return
        if not alive:
            started = loop.time()
            self._lease_id = (await self.store.grant_lease(self.settings.ttl)).id
        ops, compare = self._writes(step, owner, owner_kv, lease_kv)
        done = await self.store.txn(compare, ops)
        if not done.succeeded:
            self._lapse(f"the quorum changed under {step}")
            return
        if step is not Step.REFRESH:
            logger.warning("%s: %s", self.name, why)
            self.owner = Claim.parse(ops[0].value) if isinstance(ops[0], Put) else self.owner
            self.on_change()
        self._held_from(started)

    def _writes(
        self, step: Step, owner: Claim | None, owner_kv: KeyValue | None, lease_kv: KeyValue | None
    ) -> tuple[list[Op], list[Compare]]:
        p, lid = self.settings.prefix, self._lease_id
        no_lease = Compare.create_revision(f"{p}/lease", "==", 0)
        if step is Step.CREATE:
            claim = Claim(self.cluster, self.epoch)
            return (
                [Put(f"{p}/owner", claim.to_json()), Put(f"{p}/lease", claim.to_json(), lid)],
                [Compare.create_revision(f"{p}/owner", "==", 0), no_lease],
            )
        assert owner is not None and owner_kv is not None
        same_owner = Compare.mod_revision(f"{p}/owner", "==", owner_kv.mod_revision)
        if step is Step.TAKE:
            claim = Claim(self.cluster, max(owner.epoch, self.epoch) + 1)
            return (
                [Put(f"{p}/owner", claim.to_json()), Put(f"{p}/lease", claim.to_json(), lid)],
                [same_owner, no_lease],
            )
        same_lease = (
            Compare.mod_revision(f"{p}/lease", "==", lease_kv.mod_revision)
            if lease_kv is not None
            else no_lease
        )
        return [Put(f"{p}/lease", owner.to_json(), lid)], [same_owner, same_lease]

    def _mine(self, kv: KeyValue) -> bool:
        claim = Claim.parse(kv.value)
        return kv.lease == self._lease_id and claim is not None and claim.cluster == self.cluster

    def _held_from(self, started: float) -> None:
        was = self.valid_until
        self.valid_until = started + self.settings.ttl
        if was <= started:
            logger.info("%s: holding the region lease for %s", self.name, self.cluster)
            self.on_change()
        # Wake the agent when the margin is reached, not a loop later.
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self.valid_until - self.settings.margin, self.on_change)

    def _lapse(self, why: str) -> None:
        if self.valid_until > 0:
            logger.warning("%s: not renewing the region lease: %s", self.name, why)
            self.valid_until = 0.0
            self.on_change()


__all__ = ["RegionLease"]
