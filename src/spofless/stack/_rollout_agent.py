"""A supervisor's part in rollouts coordinated through etcd (rules: spofless.stack._coord).

Two loops, started by the supervisor once its stack runs, when the topology has etcd:

- publish: the supervisor's instances (as in its state file) under
  `/spofless/<topology>/supervisors/<id>`, on a lease renewed every few seconds
  and rewritten when anything changes; the rollout driver reads health and roles
  there, wherever it runs;
- watch: the rollout keys, read whole at every change (and every few seconds in
  any case); `decide(view)` says which requests to carry out and whether a rollout
  lost its driver; this loop acts and logs one line per decision.

etcd unreachable: both loops retry every second; the stack itself never depends
on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from spofless.dcs import (
    Compare,
    DCSError,
    DCSSettings,
    EtcdStore,
    Get,
    KeyValue,
    KeyValueStore,
    LeaseNotFound,
    Put,
)
from spofless.security import etcd_client_tls
from spofless.stack._coord import (
    PUBLISH_TTL,
    AgentView,
    ReplaceRequest,
    ReplaceResult,
    RolloutKeys,
    RolloutRecord,
    coordination_etcd,
    decide,
    supervisor_doc,
    supervisor_id,
)
from spofless.stack._errors import StackError
from spofless.stack._kinds import run_argv
from spofless.stack._lb_admin import admins_routing_to, enable, remove_backend
from spofless.stack._plan import StackPlan
from spofless.stack._surge import Temporaries
from spofless.topology import CannotRunError, Topology, etcd_client_urls, instance_at

logger = logging.getLogger(__name__)

__all__ = ["RolloutAgent", "abort_orphan", "coordination_store", "readmit", "rollout_agent"]

RESCAN = 5.0  # the rollout keys are read again at least this often (a missed event, a retry)
RETRY = 1.0
PUBLISH_EVERY = 3.0  # lease renewal; a third of its ttl


class Runner(Protocol):
    """What the agent needs of its supervisor."""

    temporaries: Temporaries

    def document(self) -> dict[str, Any]: ...

    def replace(
        self, name: str, argv: tuple[str, ...] | None
    ) -> Awaitable[tuple[int, tuple[str, ...]]]: ...


def rollout_agent(plan: StackPlan, runner: Runner) -> RolloutAgent | None:
    """The agent of a supervisor running `plan`; None when the topology has no etcd."""
    try:
        store = coordination_store(plan.topology)
    except CannotRunError as exc:
        logger.warning("rollout agent: not started: %s", exc)
        return None
    if store is None:
        return None
    sid = supervisor_id(plan.state_dir)
    hosts = frozenset(plan.hosts) if plan.hosts else None
    return RolloutAgent(plan.topology, plan.state_dir, sid, runner, store, hosts)


def coordination_store(topology: Topology) -> EtcdStore | None:
    """A client of the etcd rollouts are coordinated through; None without one."""
    etcd = coordination_etcd(topology)
    if etcd is None:
        return None
    tls = etcd_client_tls(topology, check=False)
    return EtcdStore(list(etcd_client_urls(topology, etcd)), DCSSettings(tls=tls))


async def readmit(
    topology: Topology, record: RolloutRecord, client: httpx.AsyncClient
) -> dict[str, list[str]]:
    """Put what `record` drained back in rotation on every load balancer in front of its
    component; for each instance, the load balancers that did not answer."""
    admins, _ = admins_routing_to(topology, record.component, None)
    return {name: await enable(client, admins, name) for name in record.drained}


async def unsurge_lbs(topology: Topology, record: RolloutRecord, client: httpx.AsyncClient) -> None:
    """Ask every load balancer in front of `record`'s component to remove the temporary
    instances it started (drained first; not waited for): their supervisor does it too
    and stops them, this is for when that supervisor is gone as well."""
    admins, _ = admins_routing_to(topology, record.component, None)
    for name in record.surge:
        await remove_backend(client, admins, name, 0.0)


async def abort_orphan(
    store: KeyValueStore,
    keys: RolloutKeys,
    topology: Topology,
    client: httpx.AsyncClient,
    say: Callable[[str], None],
) -> RolloutRecord | None:
    """Abort the rollout of the record if no driver holds the lock: readmit what it
    drained, mark it aborted. The record as it is then (None: there is none)."""
    got = await store.txn([], [Get(keys.lock), Get(keys.record)])  # one revision
    lock = got.responses[0][0] if got.responses[0] else None
    kv = got.responses[1][0] if got.responses[1] else None
    record = RolloutRecord.from_json(kv.value) if kv is not None else None
    if record is None or record.finished or lock is not None or kv is None:
        return record
    missed = await readmit(topology, record, client)
    for name, lbs in missed.items():
        say(
            f"{name}: left drained by the rollout of {record.host} pid {record.pid}; back in "
            "rotation" + (f" (not on {', '.join(lbs)}: no answer; tried again)" if lbs else "")
        )
    record.drained = [n for n, lbs in missed.items() if lbs]
    if record.surge:
        await unsurge_lbs(topology, record, client)
        say(f"{', '.join(record.surge)}: temporary, removed by the supervisor that runs it")
        record.surge = []
    if not record.drained:
        record.phase = "aborted"
        record.note = record.note or "its driver went away"
    await store.txn(
        [
            Compare.mod_revision(keys.record, "==", kv.mod_revision),
            Compare.create_revision(keys.lock, "==", 0),
        ],
        [Put(keys.record, record.to_json())],
    )
    return record


class RolloutAgent:
    """Publishes a supervisor's instances and carries out rollout requests for them."""

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        sid: str,
        runner: Runner,
        store: KeyValueStore,
        hosts: frozenset[str] | None = None,
    ) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.sid = sid
        self.keys = RolloutKeys(topology.name)
        self._runner = runner
        self._document = runner.document
        self._store = store
        self._hosts = hosts  # the hosts its supervisor runs; None: every host
        self._changed = asyncio.Event()
        self._done: set[str] = set()
        self._unsent: dict[str, ReplaceResult] = {}  # instance -> a result not yet written

    def changed(self) -> None:
        """The supervisor's state changed: publish it."""
        self._changed.set()

    async def run(self) -> None:
        try:
            await asyncio.gather(self._publish(), self._watch())
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._store.close()

    # -- publishing ----------------------------------------------------------------

    async def _publish(self) -> None:
        key = self.keys.supervisors + self.sid
        lease = 0
        said = False
        try:
            while True:
                try:
                    if not lease:
                        lease = (await self._store.grant_lease(PUBLISH_TTL)).id
                    self._changed.clear()
                    doc = supervisor_doc(self.sid, self._document())
                    await self._store.put(key, json.dumps(doc), lease=lease)
                    said = False
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PUBLISH_EVERY):
                            await self._changed.wait()
                    await self._store.keepalive(lease)
                    await asyncio.sleep(0.05)  # coalesce bursts of changes
                except LeaseNotFound:
                    lease = 0
                except DCSError as exc:
                    if not said:
                        logger.warning("rollout agent: cannot publish to etcd: %s", exc)
                        said = True
                    await asyncio.sleep(RETRY)
                except Exception:  # a bug here must not end the publishing for good
                    logger.exception("rollout agent: publishing failed")
                    await asyncio.sleep(RETRY)
        finally:
            if lease:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await self._store.revoke_lease(lease)

    # -- requests and orphaned rollouts ---------------------------------------------

    async def _watch(self) -> None:
        said = False
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    revision, view = await self._view()
                    said = False
                    decision = decide(view)
                    if decision.carry_out or decision.abort or decision.reap:
                        logger.info("rollout agent: %s", decision.reason)
                    for req in decision.carry_out:
                        await self._carry_out(req)
                    await self._send_results()
                    for name in decision.reap:
                        await self._runner.temporaries.unsurge(name)
                    if decision.abort:
                        await abort_orphan(
                            self._store, self.keys, self.topology, client, logger.info
                        )
                    if decision.carry_out:
                        continue
                    await self._wait_change(revision)
                except DCSError as exc:
                    if not said:
                        logger.warning("rollout agent: cannot read etcd: %s", exc)
                        said = True
                    await asyncio.sleep(RETRY)
                except Exception:  # a bug here must not end the watch for good
                    logger.exception("rollout agent: watching the rollout keys failed")
                    await asyncio.sleep(RETRY)

    async def _view(self) -> tuple[int, AgentView]:
        got = await self._store.range(self.keys.prefix, prefix=True)
        by_key: dict[str, KeyValue] = {kv.key: kv for kv in got.kvs}
        lock = by_key.get(self.keys.lock)
        rec = by_key.get(self.keys.record)
        requests = []
        results: dict[str, str] = {}
        for kv in got.kvs:
            if kv.key.startswith(self.keys.prefix + "requests/"):
                req = ReplaceRequest.from_json(kv.value)
                if req is not None:
                    requests.append(req)
            elif kv.key.startswith(self.keys.prefix + "results/"):
                res = ReplaceResult.from_json(kv.value)
                if res is not None:
                    results[kv.key.removeprefix(self.keys.prefix + "results/")] = res.id
        mine = frozenset(i["name"] for i in self._document().get("instances", []))
        view = AgentView(
            mine=mine,
            lock_token=lock.create_revision if lock is not None else 0,
            record=RolloutRecord.from_json(rec.value) if rec is not None else None,
            requests=tuple(requests),
            results=results,
            done=frozenset(self._done),
            hosts=self._hosts,
            temporaries=self._runner.temporaries.tokens(),
        )
        return got.revision, view

    async def _wait_change(self, revision: int) -> None:
        with contextlib.suppress(TimeoutError):
            async with (
                asyncio.timeout(RESCAN),
                await self._store.watch(
                    self.keys.prefix, prefix=True, start_revision=revision + 1
                ) as w,
            ):
                async for _ in w:
                    return

    async def _carry_out(self, req: ReplaceRequest) -> None:
        self._done.add(req.id)
        temporaries = self._runner.temporaries
        try:
            if req.op == "surge":
                pid, address = await temporaries.surge(req.instance, req.host, req.run, req.token)
                result = ReplaceResult(req.id, True, pid, supervisor=self.sid, address=address)
            elif req.op == "unsurge":
                await temporaries.unsurge(req.instance)
                result = ReplaceResult(req.id, True, 0, supervisor=self.sid)
            else:
                pid, previous = await self._runner.replace(req.instance, self._argv(req))
                result = ReplaceResult(req.id, True, pid, previous, supervisor=self.sid)
        except StackError as exc:
            result = ReplaceResult(req.id, False, error=str(exc), supervisor=self.sid)
        logger.info(
            "rollout agent: %s %s: %s",
            req.op,
            req.instance,
            f"done, pid {result.pid}" if result.ok else f"not done: {result.error}",
        )
        self._unsent[req.instance] = result

    def _argv(self, req: ReplaceRequest) -> tuple[str, ...] | None:
        """The request's command, its placeholders expanded here (StackError if it cannot)."""
        if req.run is None:
            return req.argv
        component, _, index = req.instance.rpartition("/")
        try:
            inst = instance_at(self.topology, component, int(index))
            return run_argv(self.topology, inst, self.state_dir, req.run)
        except (ValueError, CannotRunError) as exc:
            raise StackError(f"{req.instance}: {exc}") from None

    async def _send_results(self) -> None:
        for instance, result in list(self._unsent.items()):
            await self._store.put(self.keys.result(instance), result.to_json())
            del self._unsent[instance]
