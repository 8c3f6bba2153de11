"""What the parts' own APIs say that `spofless status` does not, for `when:` events.

    Observer(topology, triggers)   a thread looking every OBSERVE_INTERVAL; `latest()`

- `switchover` events of a postgres component: its switchover request, the etcd key
  `spofless pg switchover` writes and the new leader deletes once it leads (read with
  the topology's etcd endpoints and client certificate, as `spofless pg` does). A
  switchover is in progress while the key exists.
- `backend_down` events of a load balancer: each of its instances' admin `/status`
  (every backend's state: up, down, ejected, drained, disabled), looked at as the
  monitor does (spofless.monitor.probe, with the admin token).

Everything else a `when:` waits for (roles, states, restarts, a replica's lag, the VIP's
holder) is in the status snapshots already. Only what the plan's triggers need is
looked at. A look that fails (etcd or a load balancer not answering: the drill may
have paused it) keeps the last known facts for that part: an event is a change seen,
never an absence of answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spofless.topology import Topology
from spofless.topology._drills import Trigger

if TYPE_CHECKING:
    import httpx

    from spofless.dcs import EtcdStore
    from spofless.monitor import Target

logger = logging.getLogger(__name__)

OBSERVE_INTERVAL = 0.2  # seconds between two looks
LOOK_BOUND = 1.0  # seconds one look at one part may take


@dataclass(frozen=True)
class Facts:
    switchovers: frozenset[str] = frozenset()  # postgres components with one in progress
    backends: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # lb/0 -> states


def needs_observer(triggers: Sequence[Trigger]) -> bool:
    return any(t.event in ("switchover", "backend_down") for t in triggers)


class Observer:
    """A thread with its own event loop, looking at the parts the triggers name."""

    def __init__(self, topology: Topology, triggers: Sequence[Trigger]) -> None:
        self.topology = topology
        self.pg = sorted({t.component for t in triggers if t.event == "switchover"})
        self.lbs = sorted({t.component for t in triggers if t.event == "backend_down"})
        self._facts = Facts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-observer", daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        self._first.wait(5 * LOOK_BOUND)  # the facts before the first fault, when it can
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest(self) -> Facts:
        with self._lock:
            return self._facts

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the drill goes on without these events; say why
            logger.error("the drill's observer stopped: %s", exc)
        finally:
            self._first.set()

    async def _main(self) -> None:
        import httpx

        from spofless.monitor import Target
        from spofless.pg import ops

        stores: dict[str, tuple[str, EtcdStore]] = {}
        for comp in self.pg:
            t = ops.target(self.topology, comp)
            with contextlib.suppress(ops.PgOpError):
                stores[comp] = (t.prefix, t.store())
        lbs = []
        for name in self.lbs:
            lb = self.topology.components[name]
            admin = getattr(lb, "admin_port", None)
            if admin is None:
                continue
            for inst in self.topology.instances[name]:
                host = self.topology.hosts.get(inst.host) if inst.host else None
                ip = (host.address if host is not None else None) or "127.0.0.1"
                token = getattr(lb, "admin_token", None)
                lbs.append(Target(inst, "lb", ip, admin + inst.index, token=token))
        async with httpx.AsyncClient(trust_env=False) as client:
            try:
                while not self._stop.is_set():
                    await self._look(stores, lbs, client)
                    self._first.set()
                    await asyncio.sleep(OBSERVE_INTERVAL)
            finally:
                for _, store in stores.values():
                    with contextlib.suppress(Exception):
                        await store.close()

    async def _look(
        self,
        stores: Mapping[str, tuple[str, EtcdStore]],
        lbs: Sequence[Target],
        client: httpx.AsyncClient,
    ) -> None:
        from spofless.monitor import probe

        last = self.latest()
        switchovers = set(last.switchovers)
        for comp, (prefix, store) in stores.items():
            try:
                async with asyncio.timeout(LOOK_BOUND):
                    kvs = (await store.range(f"{prefix}/switchover")).kvs
            except Exception:  # etcd not answering: keep what was known
                continue
            if kvs:
                switchovers.add(comp)
            else:
                switchovers.discard(comp)
        backends = dict(last.backends)
        observations = await asyncio.gather(*(probe(t, LOOK_BOUND, client) for t in lbs))
        for t, obs in zip(lbs, observations, strict=True):
            if obs.ok and "backends" in obs.facts:
                backends[t.name] = dict(obs.facts["backends"])
        with self._lock:
            self._facts = Facts(frozenset(switchovers), backends)
