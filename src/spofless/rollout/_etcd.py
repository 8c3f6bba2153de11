"""Rollouts coordinated through etcd: every supervisor, on any machine.

The rules (the lock, fencing, requests and results, a dead driver, temporary
instances) are spofless.stack._coord's; this is the driver's side of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from spofless.dcs import (
    Compare,
    DCSError,
    DCSSettings,
    Delete,
    Get,
    KeyValueStore,
    Leadership,
    Put,
    try_campaign,
)
from spofless.rollout._coordination import POLL, Coordination, Say
from spofless.rollout._errors import RolloutError
from spofless.security import etcd_client_tls
from spofless.stack._coord import (
    LOCK_TTL,
    PUBLISH_TTL,
    ReplaceRequest,
    ReplaceResult,
    RolloutKeys,
    RolloutRecord,
)
from spofless.stack._rollout_agent import abort_orphan, readmit
from spofless.topology import Topology

__all__ = ["EtcdCoordination"]

# How long a rollout waits for the supervisors to be published in etcd: one publishes at
# once when its stack runs (`up --wait` may return just before), and again within its
# lease's ttl after a lapse (etcd slow, the machine loaded).
PUBLISH_WAIT = float(PUBLISH_TTL)


class EtcdCoordination(Coordination):
    def __init__(self, topology: Topology, store: KeyValueStore) -> None:
        self.topology = topology
        self.store = store
        self.keys = RolloutKeys(topology.name)
        self._lead: Leadership | None = None
        self._watcher: asyncio.Task[None] | None = None

    def _unreachable(self, exc: DCSError) -> RolloutError:
        return RolloutError(f"etcd, through which rollouts are coordinated, does not answer: {exc}")

    async def _supervisors(self) -> list[dict[str, Any]]:
        try:
            got = await self.store.range(self.keys.supervisors, prefix=True)
        except DCSError as exc:
            raise self._unreachable(exc) from None
        docs = []
        for kv in got.kvs:
            with contextlib.suppress(ValueError):
                docs.append(json.loads(kv.value))
        return docs

    async def _published(
        self, ready: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        """The supervisors' documents once `ready` holds for them, or as they are after
        PUBLISH_WAIT seconds (a supervisor just started publishes within that)."""
        deadline = time.monotonic() + PUBLISH_WAIT
        while True:
            docs = await self._supervisors()
            if ready(docs) or time.monotonic() >= deadline:
                return docs
            await asyncio.sleep(2 * POLL)

    async def instances(self, strict: bool = True) -> list[dict[str, Any]]:
        docs = await (self._published(bool) if strict else self._supervisors())
        if not docs and strict:
            raise RolloutError(
                f"no supervisor of {self.topology.name} is published in etcd (waited "
                f"{PUBLISH_WAIT:g}s): start the stack with `spofless up` first"
            )
        return _instances_of(docs)

    async def not_running(self, component: str) -> str | None:
        names = {i.name for i in self.topology.instances[component]}
        docs = await self._published(lambda d: names <= {i["name"] for i in _instances_of(d)})
        running = {i["name"] for i in _instances_of(docs)}
        missing = [i for i in self.topology.instances[component] if i.name not in running]
        if not missing:
            return None
        where = ", ".join(f"{i.name} (host {i.host})" if i.host else i.name for i in missing)
        return (
            f"{where}: no live supervisor runs it (none publishes it in etcd within "
            f"{PUBLISH_WAIT:g}s); a rollout waits until every instance runs: start it with "
            "`spofless up FILE --host HOST`"
        )

    async def _read(self) -> tuple[RolloutRecord | None, bool]:
        try:
            got = await self.store.txn([], [Get(self.keys.record), Get(self.keys.lock)])
        except DCSError as exc:
            raise self._unreachable(exc) from None
        rec = got.responses[0][0] if got.responses[0] else None
        return (RolloutRecord.from_json(rec.value) if rec else None), bool(got.responses[1])

    async def begin(self, record: RolloutRecord, say: Say) -> None:
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        settings = DCSSettings(ttl=LOCK_TTL, tls=etcd_client_tls(self.topology, check=False))
        try:
            won = await try_campaign(self.store, self.keys.lock, me, settings)
        except DCSError as exc:
            raise self._unreachable(exc) from None
        if not isinstance(won, Leadership):
            running, _ = await self._read()
            what = running.describe(True) if running else f"held by {won.value}"
            raise RolloutError(
                f"a rollout already runs: {what}; wait for it, or stop it with "
                "`spofless rollout FILE --abort` (on any machine)"
            )
        self._lead = won
        try:
            previous, _ = await self._read()
            if previous is not None and not previous.finished and previous.drained:
                async with httpx.AsyncClient(timeout=2.0) as client:
                    missed = await readmit(self.topology, previous, client)
                for name, lbs in missed.items():
                    say(
                        f"{name}: left drained by the rollout of {previous.host} pid "
                        f"{previous.pid}; back in rotation"
                        + (f" (not on {', '.join(lbs)}: they did not answer)" if lbs else "")
                    )
            ok = await self.store.txn(
                [won.fence()],
                [
                    Delete(self.keys.prefix + "requests/", prefix=True),
                    Delete(self.keys.prefix + "results/", prefix=True),
                    Delete(self.keys.abort),
                    Put(self.keys.record, record.to_json()),
                ],
            )
            if not ok.succeeded:
                raise RolloutError("lost the rollout lock as it was taken; try again")
        except DCSError as exc:
            await won.resign()
            raise self._unreachable(exc) from None
        except BaseException:
            await won.resign()
            raise

    async def save(self, record: RolloutRecord) -> None:
        assert self._lead is not None
        try:
            ok = await self.store.txn(
                [self._lead.fence()], [Put(self.keys.record, record.to_json())]
            )
        except DCSError as exc:
            raise self._unreachable(exc) from None
        if not ok.succeeded:
            raise RolloutError("this rollout lost its lock (its lease expired): stopped")

    async def end(self, record: RolloutRecord) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        lead, self._lead = self._lead, None
        if lead is None:
            return
        # Unreachable: the supervisors finish the record once the lock expires.
        with contextlib.suppress(DCSError):
            await self.store.txn(
                [lead.fence()], [Put(self.keys.record, record.to_json()), Delete(self.keys.abort)]
            )
        await lead.resign()

    async def replace(
        self, name: str, argv: tuple[str, ...] | None, bound: float, run: str | None = None
    ) -> tuple[int, tuple[str, ...]]:
        assert self._lead is not None
        req = ReplaceRequest.new(name, argv, self._lead.fencing_token, run)
        result = await self._ask(req, bound)
        assert result.pid is not None
        return result.pid, result.previous_argv

    async def surge(
        self, name: str, host: str | None, run: str | None, bound: float
    ) -> tuple[int, str]:
        assert self._lead is not None
        req = ReplaceRequest.new(name, None, self._lead.fencing_token, run, "surge", host)
        result = await self._ask(req, bound)
        assert result.pid is not None
        if result.address is None:
            raise RolloutError(f"{name}: its supervisor did not say where it listens")
        return result.pid, result.address

    async def unsurge(self, name: str, bound: float) -> None:
        assert self._lead is not None
        await self._ask(
            ReplaceRequest.new(name, None, self._lead.fencing_token, op="unsurge"), bound
        )

    async def _ask(self, req: ReplaceRequest, bound: float) -> ReplaceResult:
        """Write request `req` and wait for its result (RolloutError: refused, no answer)."""
        assert self._lead is not None
        name = req.instance
        try:
            ok = await self.store.txn(
                [self._lead.fence()],
                [Delete(self.keys.result(name)), Put(self.keys.request(name), req.to_json())],
            )
            if not ok.succeeded:
                raise RolloutError("this rollout lost its lock (its lease expired): stopped")
            deadline = time.monotonic() + bound
            while time.monotonic() < deadline:
                kv = await self.store.get(self.keys.result(name))
                result = ReplaceResult.from_json(kv.value) if kv is not None else None
                if result is not None and result.id == req.id:
                    await self.store.txn(
                        [self._lead.fence()],
                        [Delete(self.keys.request(name)), Delete(self.keys.result(name))],
                    )
                    if not result.ok or result.pid is None:
                        raise RolloutError(f"{name}: the supervisor refused: {result.error}")
                    return result
                await asyncio.sleep(POLL)
        except DCSError as exc:
            raise self._unreachable(exc) from None
        where = f"on host {req.host}" if req.op == "surge" and req.host else "that runs it"
        raise RolloutError(
            f"{name}: no supervisor answered the request to {req.op} it within {bound:g}s "
            f"(is the supervisor {where} alive and connected to etcd?)"
        )

    def on_stop(self, stop: Callable[[str], None]) -> None:
        assert self._lead is not None
        token = self._lead.fencing_token

        def lost(why: str) -> None:
            if self._lead is not None:  # not the release of `end`
                stop(f"this rollout lost its lock: {why}")

        self._lead.add_lost_callback(lost)

        async def watch_abort() -> None:
            while True:
                await asyncio.sleep(0.5)
                with contextlib.suppress(DCSError):
                    kv = await self.store.get(self.keys.abort)
                    if kv is not None and kv.value == str(token):
                        stop("aborted (`spofless rollout --abort`)")
                        return

        self._watcher = asyncio.create_task(watch_abort())

    async def status(self) -> str:
        record, alive = await self._read()
        return record.describe(alive) if record else "no rollout has run on this system"

    async def abort(self, say: Say) -> None:
        try:
            lock = await self.store.get(self.keys.lock)
            if lock is not None:
                record, _ = await self._read()
                who = f"{record.host} pid {record.pid}" if record else lock.value
                await self.store.txn(
                    [Compare.create_revision(self.keys.lock, "==", lock.create_revision)],
                    [Put(self.keys.abort, str(lock.create_revision))],
                )
                deadline = time.monotonic() + 60
                while await self.store.get(self.keys.lock) is not None:
                    if time.monotonic() > deadline:
                        raise RolloutError(f"the rollout of {who} did not stop within 60 s")
                    await asyncio.sleep(POLL)
                say(f"the rollout of {who} stopped")
            before, _ = await self._read()
            async with httpx.AsyncClient(timeout=2.0) as client:
                after = await abort_orphan(self.store, self.keys, self.topology, client, say)
        except DCSError as exc:
            raise self._unreachable(exc) from None
        if lock is None and (before is None or before.finished):
            say("no rollout runs and none left an instance drained")
        elif after is not None and after.drained:
            say(f"still drained: {', '.join(after.drained)} (a load balancer did not answer)")

    async def close(self) -> None:
        if self._lead is not None:
            await self._lead.resign()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.store.close()


def _instances_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every instance the supervisors' documents list (the first listing wins), each
    with the supervisor that runs it."""
    seen: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for inst in doc.get("instances", []):
            seen.setdefault(inst["name"], {**inst, "supervisor": doc.get("supervisor")})
    return list(seen.values())
