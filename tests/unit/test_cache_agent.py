"""The cache agent's loop on a MemoryStore: election, fencing on a lost lease, promotion,
a demoted primary following the new one.

Redis is a stand-in here (`FakeRedis`: the role, offset and fencing the agent sets);
tests/integration/test_cache_failover.py runs the same agents on real Redis and etcd.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from spofless.cache._redis import RedisState
from spofless.cache._settings import CacheSettings, dcs_settings
from spofless.cache.agent import CacheAgent
from spofless.cache.decide import Action
from spofless.dcs import MemoryStore


class FakeRedis:
    """What the agent does to its Redis, kept in memory."""

    def __init__(self) -> None:
        self.running = False
        self.role = "primary"
        self.fenced = True
        self.master: str | None = None
        self.offset = 0

    async def start(self, replica_of: tuple[str, int] | None) -> None:
        # Like the real one: always a fenced replica, of nobody when no leader is known.
        host, port = replica_of or ("192.0.2.1", 9)
        self.running, self.fenced = True, True
        self.role, self.master = "replica", f"{host}:{port}"

    async def observe(self) -> RedisState:
        if not self.running:
            return RedisState()
        return RedisState(self.role, self.offset, self.fenced, self.master, self.master is not None)  # type: ignore[arg-type]

    async def fence(self) -> None:
        self.fenced = True

    async def unfence(self) -> None:
        self.fenced = False

    async def promote(self) -> None:
        self.role, self.master, self.fenced = "primary", None, False

    async def follow(self, host: str, port: int) -> None:
        self.fenced = True
        self.role, self.master = "replica", f"{host}:{port}"

    async def close(self) -> None:
        self.running = False


def agent(store: MemoryStore, index: int) -> tuple[CacheAgent, FakeRedis]:
    settings = CacheSettings(
        component="c", index=index, host="127.0.0.1", port=7000 + index, api_port=0,
        data_dir=Path("/nonexistent"), prefix="/t/cache/c", dcs=dcs_settings(2, 0.25),
        loop_wait=0.25,
    )  # fmt: skip
    a = CacheAgent(settings, store)
    fake = FakeRedis()
    a.redis = fake  # type: ignore[assignment]
    return a, fake


async def cycles(*agents: CacheAgent, n: int = 3) -> None:
    for _ in range(n):
        for a in agents:
            await a.cycle()


async def test_one_primary_the_other_follows_it() -> None:
    store = MemoryStore()
    (a, ra), (b, rb) = agent(store, 0), agent(store, 1)
    await cycles(a, b, n=4)
    assert a.holds_lease and ra.role == "primary" and not ra.fenced
    assert not b.holds_lease and rb.role == "replica" and rb.master == "127.0.0.1:7000"
    await a.shutdown()
    await b.shutdown()


async def test_a_lost_lease_fences_at_once_and_the_replica_takes_over() -> None:
    store = MemoryStore()
    (a, ra), (b, rb) = agent(store, 0), agent(store, 1)
    await cycles(a, b, n=4)
    leadership = a.leadership
    assert leadership is not None
    rb.offset = ra.offset = 10
    # The lease is gone on the store (expired, or revoked by an operator).
    await store.revoke_lease(leadership.lease_id)
    async with asyncio.timeout(5):
        await leadership.lost.wait()
    assert a.leadership is None
    await asyncio.sleep(0.05)  # the fencing task the lost callback started
    assert ra.fenced and ra.role == "primary"  # no write accepted from now on
    rb.offset = 11  # b holds more of the stream: it is the one to promote
    decisions = [await b.cycle(), await b.cycle()]
    assert [d.action for d in decisions] == [Action.CAMPAIGN, Action.PROMOTE]
    assert rb.role == "primary" and not rb.fenced
    # The old primary sees the new leader and becomes its replica.
    d = await a.cycle()
    assert d.action is Action.FOLLOW and ra.role == "replica" and ra.master == "127.0.0.1:7001"
    await a.shutdown()
    await b.shutdown()


async def test_an_unchanged_member_record_is_not_written_again() -> None:
    """Every loop keeps the member's lease alive, but writes its record (a raft write on
    every etcd member) only when it changed."""
    store = MemoryStore()
    a, fake = agent(store, 0)
    b, _ = agent(store, 1)
    await cycles(a, b, n=4)
    puts: list[str] = []
    real_put = store.put

    async def counting_put(key: str, value: str, **kw: object) -> object:
        puts.append(key)
        return await real_put(key, value, **kw)  # type: ignore[arg-type]

    store.put = counting_put  # type: ignore[method-assign]
    await cycles(a, b, n=3)
    assert [k for k in puts if "/members/" in k] == []
    fake.offset += 100  # it changed: written once
    await cycles(a, b, n=2)
    assert [k for k in puts if "/members/" in k] == ["/t/cache/c/members/c-0"]
    await a.shutdown()
    await b.shutdown()
