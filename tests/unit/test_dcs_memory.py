"""MemoryStore keeps etcd's semantics: revisions, CAS, leases on a clock, watches."""

from __future__ import annotations

import asyncio

import pytest

from spofless.dcs import (
    CompactedError,
    Compare,
    DCSUnavailable,
    Delete,
    Get,
    LeaseNotFound,
    ManualClock,
    MemoryStore,
    Put,
)


async def test_revisions_grow_per_write_and_keys_track_create_mod_version() -> None:
    s = MemoryStore()
    assert s.revision == 1
    assert await s.put("a", "1") == 2
    assert await s.put("a", "2") == 3
    kv = await s.get("a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == ("2", 2, 3, 2)
    assert await s.delete("missing") == 0
    assert s.revision == 3  # deleting nothing is not a write
    assert await s.delete("a") == 1
    assert await s.get("a") is None
    assert s.revision == 4


async def test_prefix_range_is_sorted_and_past_revisions_readable() -> None:
    s = MemoryStore()
    await s.put("p/b", "2")
    await s.put("p/a", "1")
    await s.put("q", "x")
    now = await s.range("p/", prefix=True)
    assert [kv.key for kv in now.kvs] == ["p/a", "p/b"]
    await s.delete("p/", prefix=True)
    past = await s.range("p/", prefix=True, revision=3)
    assert [kv.value for kv in past.kvs] == ["2", "1"][::-1]
    s.compact(4)
    with pytest.raises(CompactedError, match="revision 3 was compacted"):
        await s.range("p/", prefix=True, revision=3)


async def test_txn_is_compare_and_swap() -> None:
    s = MemoryStore()
    created = await s.txn([Compare.create_revision("k", "==", 0)], [Put("k", "first")])
    assert created.succeeded and created.revision == 2
    again = await s.txn([Compare.create_revision("k", "==", 0)], [Put("k", "second")], [Get("k")])
    assert not again.succeeded
    assert again.revision == 2  # the failure branch only read
    assert again.responses[0][0].value == "first"
    swapped = await s.txn(
        [Compare.value("k", "==", "first"), Compare.mod_revision("k", "==", 2)],
        [Put("k", "third"), Put("other", "x"), Delete("k2")],
    )
    assert swapped.succeeded and swapped.revision == 3  # one revision for the whole txn
    assert (await s.get("other")) is not None
    # As etcd: a value compare on a missing key fails, even `!=`.
    assert not (await s.txn([Compare.value("nope", "!=", "x")], [Put("y", "1")])).succeeded


async def test_lease_expires_on_the_clock_and_takes_its_keys() -> None:
    clock = ManualClock()
    s = MemoryStore(clock=clock)
    lease = await s.grant_lease(5)
    await s.put("held", "v", lease=lease.id)
    clock.advance(4)
    assert await s.keepalive(lease.id) == 5  # renewed at t=4: expires at 9
    clock.advance(4.9)
    assert await s.get("held") is not None
    clock.advance(0.1)
    assert await s.get("held") is None
    with pytest.raises(LeaseNotFound):
        await s.keepalive(lease.id)
    with pytest.raises(LeaseNotFound):
        await s.put("x", "y", lease=lease.id)
    await s.revoke_lease(lease.id)  # already gone: not an error


async def test_revoke_deletes_keys_and_put_without_lease_detaches() -> None:
    s = MemoryStore()
    lease = await s.grant_lease(10)
    await s.put("a", "1", lease=lease.id)
    await s.put("b", "1", lease=lease.id)
    await s.put("b", "2")  # now outlives the lease
    await s.revoke_lease(lease.id)
    assert await s.get("a") is None
    assert await s.get("b") is not None


async def test_watch_sees_every_event_in_order_and_replays_from_a_revision() -> None:
    s = MemoryStore()
    await s.put("w/a", "0")
    w = await s.watch("w/", prefix=True)
    await s.put("w/a", "1")
    await s.put("other", "x")
    await s.txn([], [Put("w/b", "2"), Delete("w/a")])
    got = [await anext(w) for _ in range(3)]
    assert [(e.type, e.kv.key, e.revision) for e in got] == [
        ("put", "w/a", 3),
        ("put", "w/b", 5),
        ("delete", "w/a", 5),
    ]
    assert w.next_revision == 6
    await w.close()
    async with await s.watch("w/a", start_revision=2) as replay:
        assert [(await anext(replay)).kv.value for _ in range(2)] == ["0", "1"]


async def test_watch_waits_for_later_writes_and_sees_lease_expiry() -> None:
    clock = ManualClock()
    s = MemoryStore(clock=clock)
    lease = await s.grant_lease(1)
    await s.put("k", "v", lease=lease.id)
    w = await s.watch("k")
    pending = asyncio.ensure_future(anext(w))
    await asyncio.sleep(0.01)
    assert not pending.done()
    clock.advance(1)
    event = await asyncio.wait_for(pending, 2)
    assert event.type == "delete" and event.kv.key == "k"


async def test_watch_from_a_compacted_revision_raises() -> None:
    s = MemoryStore()
    for i in range(5):
        await s.put("k", str(i))
    s.compact(4)
    with pytest.raises(CompactedError):
        await s.watch("k", start_revision=2)
    w = await s.watch("k", start_revision=4)
    assert (await anext(w)).revision == 4


async def test_unavailable_store_raises_and_recovers() -> None:
    s = MemoryStore()
    s.available = False
    with pytest.raises(DCSUnavailable):
        await s.put("a", "1")
    with pytest.raises(DCSUnavailable):
        await s.grant_lease(5)
    s.available = True
    assert await s.put("a", "1") == 2
