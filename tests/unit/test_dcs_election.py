"""Leader election on the in-memory store: fencing tokens, loss before expiry, resign."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from spofless.dcs import (
    Compare,
    DCSSettings,
    DCSUnavailable,
    KeyValueStore,
    LeadershipLost,
    Lease,
    MemoryStore,
    Op,
    RangeResult,
    TxnResult,
    Watch,
    campaign,
)

FAST = DCSSettings(
    ttl=1, renew_interval=0.2, retry_timeout=0.2, request_timeout=0.1, safety_margin=0.3
)


class Partitionable(KeyValueStore):
    """One client's view of a shared store, which the test can cut off."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.cut = False

    def _check(self) -> None:
        if self.cut:
            raise DCSUnavailable("cut off by the test")

    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        self._check()
        return await self.store.range(key, prefix=prefix, revision=revision)

    async def put(self, key: str, value: str, *, lease: int = 0) -> int:
        self._check()
        return await self.store.put(key, value, lease=lease)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        self._check()
        return await self.store.delete(key, prefix=prefix)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._check()
        return await self.store.txn(compare, success, failure)

    async def grant_lease(self, ttl: int) -> Lease:
        self._check()
        return await self.store.grant_lease(ttl)

    async def keepalive(self, lease_id: int) -> int:
        self._check()
        return await self.store.keepalive(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        self._check()
        await self.store.revoke_lease(lease_id)

    async def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0) -> Watch:
        self._check()
        return await self.store.watch(key, prefix=prefix, start_revision=start_revision)

    async def close(self) -> None:
        pass


async def test_second_contender_waits_and_wins_after_resign_with_a_larger_token() -> None:
    store = MemoryStore()
    a = await campaign(store, "/leader", "a", FAST)
    assert a.is_leader and (await store.get("/leader")).value == "a"  # type: ignore[union-attr]
    b_task = asyncio.create_task(campaign(store, "/leader", "b", FAST))
    await asyncio.sleep(0.5)  # several renewals: a keeps it, b keeps waiting
    assert a.is_leader and not b_task.done()
    await a.resign()
    assert not a.is_leader and a.lost.is_set() and a.reason == "resigned"
    b = await asyncio.wait_for(b_task, 2)
    assert b.fencing_token > a.fencing_token
    await b.resign()
    assert await store.get("/leader") is None


async def test_cut_off_holder_gives_up_before_anyone_else_can_be_elected() -> None:
    shared = MemoryStore()
    view = Partitionable(shared)
    a = await campaign(view, "/leader", "a", FAST)
    reasons: list[str] = []
    a.add_lost_callback(reasons.append)
    loop = asyncio.get_running_loop()
    view.cut = True
    b = await asyncio.wait_for(campaign(shared, "/leader", "b", FAST), 3)
    elected_at = loop.time()
    assert a.lost.is_set() and not a.is_leader
    assert reasons and "no successful renewal" in reasons[0]
    assert a.valid_until < elected_at  # a stopped acting as leader before b was elected
    assert b.fencing_token > a.fencing_token
    view.cut = False
    with pytest.raises(LeadershipLost):
        await a.update("a-again")
    await b.resign()


async def test_update_is_fenced_and_deleting_the_key_ends_the_leadership() -> None:
    store = MemoryStore()
    a = await campaign(store, "/leader", "a", FAST)
    assert await a.update("a2") > a.fencing_token
    kv = await store.get("/leader")
    assert kv is not None and kv.value == "a2" and kv.create_revision == a.fencing_token
    # An outside write through the fence compare succeeds only while a leads.
    assert (await store.txn([a.fence()], [])).succeeded
    await store.delete("/leader")
    with pytest.raises(LeadershipLost):
        await a.update("a3")
    assert a.lost.is_set() and a.reason == "the leader key was deleted or taken"
    assert await store.get("/leader") is None  # the fenced put did not recreate it


async def test_renewal_notices_a_deleted_key_without_any_update() -> None:
    store = MemoryStore()
    a = await campaign(store, "/leader", "a", FAST)
    await store.delete("/leader")
    await asyncio.wait_for(a.lost.wait(), 1)
    assert a.reason == "the leader key was deleted or taken"


async def test_campaign_retries_an_unavailable_store() -> None:
    store = MemoryStore()
    store.available = False
    task = asyncio.create_task(campaign(store, "/leader", "a", FAST))
    await asyncio.sleep(0.3)
    assert not task.done()
    store.available = True
    async with await asyncio.wait_for(task, 2) as a:
        assert a.is_leader
    assert not a.is_leader
