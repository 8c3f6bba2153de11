"""Leader election with fencing on any KeyValueStore.

The leader is whoever created `key` (attached to its lease); the key's
create revision is the fencing token: it grows with every new leader, so a
resource guarded by it can refuse a deposed leader's late writes. Every
write to the key is a transaction comparing the key's create revision with
the token.

The holder renews its lease every `renew_interval` and checks that the key
is still its own. `lost` is set (and callbacks run) as soon as the
leadership ends: resigned, lease expired or revoked, key deleted or taken,
or `ttl - safety_margin` passed since the last renewal that succeeded (the
lease may still exist on the server, but the holder can no longer prove it;
it stops acting as leader before anyone else can be elected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

from spofless.dcs._errors import (
    CompactedError,
    DCSError,
    DCSUnavailable,
    LeadershipLost,
    LeaseNotFound,
)
from spofless.dcs._lease import LeaderLease
from spofless.dcs._settings import DCSSettings
from spofless.dcs._store import Compare, Delete, Get, KeyValue, KeyValueStore, Put

logger = logging.getLogger(__name__)

__all__ = ["Leadership", "campaign", "try_campaign"]


async def campaign(
    store: KeyValueStore, key: str, value: str, settings: DCSSettings | None = None
) -> Leadership:
    """Wait until this caller holds `key`, then return its Leadership.

    Waits as long as another holder has the key (bound it with asyncio.timeout);
    store outages are retried every renew_interval, never raised.
    """
    settings = settings or DCSSettings()
    while True:
        try:
            won = await try_campaign(store, key, value, settings)
            if isinstance(won, Leadership):
                return won
            logger.info("leader %s: held by %s, waiting", key, won.value)
            await _wait_deleted(store, key, won.mod_revision + 1, settings.ttl)
        except CompactedError:
            continue  # the holder's last change is history already: try again now
        except DCSUnavailable as exc:
            logger.warning("leader %s: campaign cannot reach the store: %s", key, exc)
            await asyncio.sleep(settings.renew_interval)


async def try_campaign(
    store: KeyValueStore, key: str, value: str, settings: DCSSettings | None = None
) -> Leadership | KeyValue:
    """One attempt at `key`: its Leadership when this caller now holds it, else the
    holder's key (its value says who). For a lock that refuses rather than waits.

    DCSUnavailable when the store does not answer (nothing is held then: the lease
    granted for the attempt is revoked, or expires within ttl)."""
    settings = settings or DCSSettings()
    loop = asyncio.get_running_loop()
    while True:
        sent_at = loop.time()
        lease = await store.grant_lease(settings.ttl)
        try:
            result = await store.txn(
                [Compare.create_revision(key, "==", 0)],
                [Put(key, value, lease.id)],
                [Get(key)],
            )
        except BaseException:
            await _revoke_quietly(store, lease.id)
            raise
        holder = result.responses[0][0] if not result.succeeded and result.responses[0] else None
        token = result.revision if result.succeeded else 0
        if holder is not None and holder.lease == lease.id:
            # Our txn was applied, its answer lost, and retried on another member.
            token = holder.create_revision
        if token:
            tracker = LeaderLease(settings, sent_at, lease.ttl)
            leadership = Leadership(store, key, value, token, lease.id, tracker)
            logger.info("leader %s: elected value=%s token=%d", key, value, token)
            return leadership
        await _revoke_quietly(store, lease.id)
        if holder is not None:
            return holder
        # Deleted between the compare and the read: try again.


async def _wait_deleted(store: KeyValueStore, key: str, from_revision: int, bound: float) -> None:
    """Until key is deleted at or after from_revision, or `bound` seconds (then re-check)."""
    with contextlib.suppress(TimeoutError):
        async with (
            asyncio.timeout(bound),
            await store.watch(key, start_revision=from_revision) as w,
        ):
            async for event in w:
                if event.type == "delete":
                    return


async def _revoke_quietly(store: KeyValueStore, lease_id: int) -> None:
    try:
        await store.revoke_lease(lease_id)
    except DCSError as exc:  # it expires on its own within ttl
        logger.debug("lease %x: revoke failed: %s", lease_id, exc)


class Leadership:
    """The leadership of `key` won by campaign(): a fencing token and a `lost` signal."""

    def __init__(
        self,
        store: KeyValueStore,
        key: str,
        value: str,
        fencing_token: int,
        lease_id: int,
        tracker: LeaderLease,
    ) -> None:
        self.store = store
        self.key = key
        self.value = value
        self.fencing_token = fencing_token  # the key's create revision
        self.lease_id = lease_id
        self.lost = asyncio.Event()  # set once, when the leadership ends for any reason
        self._tracker = tracker
        self._callbacks: list[Callable[[str], object]] = []
        self._loop = asyncio.get_running_loop()
        self._deadline: asyncio.TimerHandle | None = None
        self._arm_deadline()
        self._renewer = self._loop.create_task(self._renew_forever(), name=f"renew {key}")

    @property
    def is_leader(self) -> bool:
        """Whether this holder may act as leader now (checked against the clock)."""
        return self._tracker.held(self._loop.time())

    @property
    def reason(self) -> str | None:
        """Why the leadership ended, or None while it holds."""
        return self._tracker.lost_reason(self._loop.time())

    @property
    def valid_until(self) -> float:
        """Loop time (loop.time()) after which the holder must not act as leader."""
        return self._tracker.valid_until

    def add_lost_callback(self, callback: Callable[[str], object]) -> None:
        """Call callback(reason) when the leadership ends (at once if it has)."""
        if self.lost.is_set():
            callback(self.reason or "ended")
        else:
            self._callbacks.append(callback)

    def fence(self) -> Compare:
        """The compare that holds only while this leadership's key exists: put it in the
        transactions that must fail once a newer leader has been elected."""
        return Compare.create_revision(self.key, "==", self.fencing_token)

    async def update(self, value: str) -> int:
        """Set the leader key's value, only if it is still ours; return the revision."""
        self._check()
        result = await self.store.txn([self.fence()], [Put(self.key, value, self.lease_id)])
        if not result.succeeded:
            self._end("the leader key was deleted or taken")
            raise LeadershipLost(f"leader {self.key}: key no longer ours")
        self.value = value
        return result.revision

    async def resign(self) -> None:
        """Stop being leader now and free the key for the next contender.

        Best effort on the store: if it is unreachable the key is freed when the lease
        expires (within ttl). The leadership itself ends at once, whatever happens.
        """
        already = self.lost.is_set()
        self._end("resigned")
        self._renewer.cancel()
        if already:
            return
        try:
            await self.store.txn([self.fence()], [Delete(self.key)])
            await self.store.revoke_lease(self.lease_id)
            logger.info("leader %s: resigned token=%d", self.key, self.fencing_token)
        except DCSError as exc:
            logger.warning("leader %s: resign could not reach the store (%s)", self.key, exc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.resign()

    # -- internals -----------------------------------------------------------------

    def _check(self) -> None:
        reason = self._tracker.lost_reason(self._loop.time())
        if reason is not None:
            self._end(reason)
            raise LeadershipLost(f"leader {self.key}: {reason}")

    def _arm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_at(self._tracker.valid_until, self._on_deadline)

    def _on_deadline(self) -> None:
        reason = self._tracker.lost_reason(self._loop.time())
        if reason is not None:
            self._end(reason)
        else:  # renewed meanwhile
            self._arm_deadline()

    def _end(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self._tracker.end(reason)
        if self._deadline is not None:
            self._deadline.cancel()
        self.lost.set()
        if reason != "resigned":
            logger.warning(
                "leader %s: lost leadership token=%d: %s", self.key, self.fencing_token, reason
            )
        if asyncio.current_task() is not self._renewer:
            self._renewer.cancel()
        for callback in self._callbacks:
            try:
                callback(reason)
            except Exception:
                logger.exception("leader %s: lost callback failed", self.key)

    async def _renew_forever(self) -> None:
        tracker = self._tracker
        while not self.lost.is_set():
            await asyncio.sleep(max(0.0, tracker.next_renewal_at() - self._loop.time()))
            sent_at = self._loop.time()
            timeout = tracker.attempt_timeout(sent_at)
            if timeout <= 0:
                self._on_deadline()
                continue
            try:
                async with asyncio.timeout(timeout):
                    ttl = await self.store.keepalive(self.lease_id)
                    tracker.renewed(sent_at, ttl)
                    self._arm_deadline()
                    check = await self.store.txn(
                        [self.fence(), Compare.lease(self.key, "==", self.lease_id)], []
                    )
                if not check.succeeded:
                    self._end("the leader key was deleted or taken")
            except LeaseNotFound:
                self._end("the lease expired on the store")
            except (DCSError, TimeoutError) as exc:
                tracker.renewal_failed(self._loop.time())
                logger.warning(
                    "leader %s: renewal failed (%s); valid %.2fs more",
                    self.key,
                    str(exc) or type(exc).__name__,
                    tracker.valid_until - self._loop.time(),
                )
