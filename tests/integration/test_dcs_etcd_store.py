"""EtcdStore against a real 3-member etcd: the KeyValueStore contract, failover, watches."""

from __future__ import annotations

import asyncio
import time

import etcd_fixtures
import pytest
from etcd_fixtures import RunningCluster

from spofless.dcs import (
    CompactedError,
    Compare,
    DCSSettings,
    DCSUnavailable,
    Delete,
    EtcdStore,
    Event,
    Get,
    KeyValueStore,
    LeaseNotFound,
    MemoryStore,
    Put,
    Watch,
    campaign,
)

pytestmark = pytest.mark.integration

etcd_cluster = etcd_fixtures.etcd_cluster  # the fixture, for this module's tests


async def scenario(s: KeyValueStore) -> list[object]:
    """The same calls on any store; the answers must be the same."""
    out: list[object] = []
    w = await s.watch("/c/", prefix=True)
    out.append(await s.put("/c/a", "1"))
    out.append(await s.put("/c/b", "2"))
    out.append(
        await s.txn([Compare.create_revision("/c/a", "==", 0)], [Put("/c/a", "x")], [Get("/c/a")])
    )
    out.append(
        await s.txn(
            [Compare.value("/c/a", "==", "1"), Compare.version("/c/b", ">", 0)],
            [Put("/c/a", "3"), Delete("/c/b")],
        )
    )
    out.append(await s.txn([Compare.value("/c/none", "!=", "v")], [Put("/c/z", "z")]))
    out.append(await s.range("/c/", prefix=True))
    out.append(await s.range("/c/", prefix=True, revision=3))
    out.append(await s.delete("/c/", prefix=True))
    out.append(await s.get("/c/a"))
    async with asyncio.timeout(5):
        out.extend([await anext(w) for _ in range(5)])
    await w.close()
    return out


async def test_etcd_and_memory_store_answer_alike(etcd_cluster: RunningCluster) -> None:
    async with EtcdStore(etcd_cluster.endpoints) as etcd:
        real = await scenario(etcd)
    assert real == await scenario(MemoryStore())


async def test_lease_keeps_key_until_it_expires(etcd_cluster: RunningCluster) -> None:
    async with EtcdStore(etcd_cluster.endpoints) as s:
        lease = await s.grant_lease(1)
        await s.put("/l", "v", lease=lease.id)
        assert (await s.get("/l")).lease == lease.id  # type: ignore[union-attr]
        deadline = time.monotonic() + 5
        while await s.get("/l") is not None:
            assert time.monotonic() < deadline, "leased key outlived its lease by 4 s"
            await asyncio.sleep(0.1)
        with pytest.raises(LeaseNotFound):
            await s.keepalive(lease.id)
        await s.revoke_lease(lease.id)  # gone already: not an error


async def test_compacted_revision_raises(etcd_cluster: RunningCluster) -> None:
    async with EtcdStore(etcd_cluster.endpoints) as s:
        revs = [await s.put("/k", str(i)) for i in range(5)]
        await s.call("/kv/compaction", {"revision": revs[-1], "physical": True})
        with pytest.raises(CompactedError):
            await s.range("/k", revision=revs[0])
        with pytest.raises(CompactedError):
            async with asyncio.timeout(5):
                w = await s.watch("/k", start_revision=revs[0])
                await anext(w)


async def collect(w: Watch, n: int, bound: float) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(bound):
        while len(events) < n:
            events.append(await anext(w))
    return events


async def create(s: KeyValueStore, key: str, value: str, bound: float = 10) -> float:
    """Create key, retrying while the store is unavailable (a raft election); safe to
    retry because it only creates. Return how long the key took to be written."""
    started = time.monotonic()
    while True:
        try:
            await s.txn([Compare.create_revision(key, "==", 0)], [Put(key, value)])
            return time.monotonic() - started
        except DCSUnavailable:
            assert time.monotonic() - started < bound, f"store unavailable for {bound}s"


async def write_keys(s: KeyValueStore, prefix: str, n: int, pause: float) -> None:
    for i in range(n):
        await create(s, f"{prefix}{i:04d}", str(i))
        await asyncio.sleep(pause)


def assert_complete(events: list[Event], n: int) -> None:
    assert [e.kv.value for e in events] == [str(i) for i in range(n)]  # none missed or repeated
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions))


async def test_watch_resumes_after_its_member_restarts(etcd_cluster: RunningCluster) -> None:
    # The watch may only use one member, so it must resume there from its revision.
    watched = etcd_cluster.names[0]
    writers = [
        url
        for url in etcd_cluster.endpoints
        if url != etcd_cluster.cluster.member(watched).client_url
    ]
    n = 60
    async with (
        EtcdStore([etcd_cluster.cluster.member(watched).client_url]) as ws,
        EtcdStore(writers) as wr,
    ):
        w = await ws.watch("/w/", prefix=True)
        writing = asyncio.create_task(write_keys(wr, "/w/", n, 0.02))
        await asyncio.sleep(0.3)
        etcd_cluster.kill(watched)
        await asyncio.sleep(0.5)  # writes go on while the watched member is down
        await asyncio.to_thread(etcd_cluster.restart, watched)
        await asyncio.wait_for(writing, 30)
        events = await collect(w, n, 30)
        await w.close()
    assert_complete(events, n)


async def test_killed_member_clients_fail_over_and_carry_on(etcd_cluster: RunningCluster) -> None:
    """kill -9 the raft leader, which every client is talking to: writes, the watch and a
    leadership held through it all carry on. A call may raise DCSUnavailable while the
    survivors elect a new raft leader (it can take longer than retry_timeout on a busy
    machine); the caller retries it on its next cycle, as here."""
    victim = etcd_cluster.leader()
    endpoints = etcd_cluster.endpoints_starting_with(victim)
    settings = DCSSettings()
    n = 100
    async with EtcdStore(endpoints, settings) as s, EtcdStore(endpoints, settings) as ws:
        leadership = await campaign(s, "/leader", "holder", settings)
        w = await ws.watch("/f/", prefix=True)
        latencies: list[float] = []
        for i in range(n):
            if i == n // 3:
                etcd_cluster.kill(victim)
            latencies.append(await create(s, f"/f/{i:04d}", str(i)))
            await asyncio.sleep(0.01)
        events = await collect(w, n, 30)
        await w.close()
        assert leadership.is_leader and not leadership.lost.is_set()
        assert s.current_endpoint != etcd_cluster.cluster.member(victim).client_url
        assert ws.current_endpoint != etcd_cluster.cluster.member(victim).client_url
        await leadership.resign()
    assert_complete(events, n)
    print(
        f"MEASURED kill -9 of the etcd leader: longest write outage {max(latencies):.3f}s "
        f"(median {sorted(latencies)[n // 2] * 1000:.1f}ms)"
    )
