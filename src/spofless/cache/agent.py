"""The agent of one cache instance: observe -> decide(view) -> act, one sentence per change.

It runs Redis as its child, publishes its member record (role, replication offset)
under `<prefix>/members/<name>` with a lease, and holds `<prefix>/leader` while it is
the shard's primary (spofless.dcs.campaign; the record of the holder is the value).
Losing the leadership fences Redis at once from the lease's `lost` callback, before
the lease can expire on etcd, so a new primary never accepts writes while the old one
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from spofless.cache._api import ApiServer, Snapshot
from spofless.cache._redis import RedisServer, RedisState
from spofless.cache._settings import CacheSettings
from spofless.cache.decide import Action, Decision, Member, View, decide
from spofless.dcs import (
    DCSError,
    KeyValueStore,
    Leadership,
    LeaseNotFound,
    campaign,
)

logger = logging.getLogger(__name__)


def member_json(m: Member) -> str:
    return json.dumps(
        {"name": m.name, "host": m.host, "port": m.port, "role": m.role,
         "offset": m.offset, "fenced": m.fenced}
    )  # fmt: skip


def parse_member(text: str) -> Member | None:
    try:
        d = json.loads(text)
        return Member(
            name=str(d["name"]),
            host=str(d["host"]),
            port=int(d["port"]),
            role=d.get("role") if d.get("role") in ("primary", "replica") else None,
            offset=int(d.get("offset") or 0),
            fenced=bool(d.get("fenced")),
        )
    except (ValueError, KeyError, TypeError):
        return None


class CacheAgent:
    """One instance of a cache shard: its Redis, its member record, maybe the lease."""

    def __init__(self, settings: CacheSettings, store: KeyValueStore) -> None:
        self.settings = settings
        self.store = store
        self.redis = RedisServer(settings)
        self.leadership: Leadership | None = None
        self.state = RedisState()
        self.leader: Member | None = None
        self._member_lease = 0
        self._published: str | None = None  # the member record as last written
        self._last_reason = ""
        self.api = ApiServer(self.snapshot)
        self._tasks: set[asyncio.Task[None]] = set()  # keep fencing tasks referenced

    @property
    def leader_key(self) -> str:
        return f"{self.settings.prefix}/leader"

    @property
    def holds_lease(self) -> bool:
        return self.leadership is not None and self.leadership.is_leader

    def me(self) -> Member:
        s = self.state
        return Member(
            self.settings.name, self.settings.host, self.settings.port, s.role, s.offset, s.fenced
        )

    def snapshot(self) -> Snapshot:
        s = self.state
        return Snapshot(
            name=self.settings.name,
            role=s.role,
            leader=self.holds_lease,
            fenced=s.fenced,
            link_up=s.link_up,
            offset=s.offset,
            address=f"{self.settings.host}:{self.settings.port}",
            leader_name=self.leader.name if self.leader else None,
        )

    async def run(self) -> None:
        """Until cancelled; then Redis stops and the lease is freed."""
        await self.api.start(self.settings.host, self.settings.api_port)
        try:
            while True:
                await self.cycle()
                await asyncio.sleep(self.settings.loop_wait)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        await self.api.close()
        await self.redis.close()
        if self.leadership is not None:
            await self.leadership.resign()
        if self._member_lease:
            with contextlib.suppress(DCSError):
                await self.store.revoke_lease(self._member_lease)

    async def observe(self) -> View:
        self.state = await self.redis.observe()
        peers: tuple[Member, ...] = ()
        leader: Member | None = None
        try:
            got = await self.store.range(self.leader_key)
            leader = parse_member(got.kvs[0].value) if got.kvs else None
            members = await self.store.range(f"{self.settings.prefix}/members/", prefix=True)
            parsed = (parse_member(kv.value) for kv in members.kvs)
            peers = tuple(m for m in parsed if m is not None and m.name != self.settings.name)
            await self._publish()
        except DCSError as exc:  # unreachable, or a lease gone meanwhile: next cycle
            logger.warning("%s: etcd: %s", self.settings.name, exc)
            leader = self.me() if self.holds_lease else None
        self.leader = leader
        return View(
            me=self.me(),
            holds_lease=self.holds_lease,
            leader=leader,
            peers=peers,
            replicating_from=self.state.master,
        )

    async def _publish(self) -> None:
        """Keep the member record alive; write it only when it changed (or its lease is
        new): an unchanged record written every loop was a raft write (fsync on every
        etcd member) per agent twice a second, for nothing."""
        key = f"{self.settings.prefix}/members/{self.settings.name}"
        if self._member_lease:
            try:
                await self.store.keepalive(self._member_lease)
            except LeaseNotFound:
                self._member_lease = 0
        if not self._member_lease:
            self._published = None
            self._member_lease = (await self.store.grant_lease(self.settings.dcs.ttl)).id
        record = member_json(self.me())
        if record != self._published:
            self._published = None  # unknown until the put is known to be done
            await self.store.put(key, record, lease=self._member_lease)
            self._published = record

    async def cycle(self) -> Decision:
        view = await self.observe()
        decision = decide(view)
        if decision.reason != self._last_reason:
            logger.info("%s: %s", self.settings.name, decision.reason)
            self._last_reason = decision.reason
        try:
            await self.act(decision, view)
        except (DCSError, OSError) as exc:
            logger.warning("%s: %s failed: %s", self.settings.name, decision.action.value, exc)
        except Exception as exc:  # a Redis error: the next cycle observes again
            logger.warning("%s: %s failed: %r", self.settings.name, decision.action.value, exc)
        return decision

    async def act(self, d: Decision, view: View) -> None:
        if d.action is Action.START:
            if self.leadership is not None:  # a primary whose Redis died or hung
                await self.leadership.resign()
                self.leadership = None
            leader = view.leader
            follow = (leader.host, leader.port) if leader and leader.name != view.me.name else None
            await self.redis.start(follow)
        elif d.action is Action.PROMOTE:
            await self.redis.promote()
        elif d.action is Action.UNFENCE:
            await self.redis.unfence()
        elif d.action is Action.FENCE:
            await self.redis.fence()
        elif d.action is Action.FOLLOW:
            assert d.target is not None
            await self.redis.follow(d.target.host, d.target.port)
        elif d.action is Action.CAMPAIGN:
            await self._campaign(view)

    async def _campaign(self, view: View) -> None:
        try:
            async with asyncio.timeout(self.settings.loop_wait):
                leadership = await campaign(
                    self.store, self.leader_key, member_json(view.me), self.settings.dcs
                )
        except TimeoutError:
            return
        self.leadership = leadership
        leadership.add_lost_callback(self._on_lost)
        logger.info("%s: holds the lease of shard %s", self.settings.name, self.settings.component)

    def _on_lost(self, reason: str) -> None:
        """Fence at once (the loop may be asleep): writes stop before the lease expires."""
        logger.warning("%s: lost the lease (%s): fencing", self.settings.name, reason)
        self.leadership = None
        task = asyncio.get_running_loop().create_task(self._fence_now())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fence_now(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.fence()
