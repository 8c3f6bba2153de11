"""Temporary instances of a service, started for a rollout (`spofless rollout --surge`).

The rule: a temporary instance lives only while the rollout that started it runs.

- **Started** by the supervisor that runs its host (`surge` on the control socket, or
  a request through etcd: spofless.stack._coord), on a free port of that host,
  running the component's `run:` command (or the rollout's `--run`) with {port}
  that port; named after the file's instances (`web/2` beside `web/0` and `web/1`).
  It is supervised (restarted) and health-checked like the others, with the
  component's check on its port; `status` shows it as temporary.
- **Served**: the rollout adds it to every load balancer that routes to the
  component once its check passed `rise` times, and waits until each of them sees
  it up, before it takes any other instance out.
- **Removed** at the rollout's end (`unsurge`): the supervisor has every load
  balancer that routes to the component remove it (each drains it first, then
  drops it), then stops its process and forgets it. Nothing is left: no process,
  no backend, no entry in the state file.
- **The rollout ends any other way** (its driver killed, its lock lost, `--abort`):
  the supervisor sees that the lock the instance was started under is not held any
  more, and removes it the same way: on one machine the state dir's `rollout.lock`
  (checked every second); with etcd the lock's create revision, which the request
  carried as its token (checked at every change of the rollout keys and every few
  seconds). A load balancer that does not answer then is skipped: restarted, it
  starts from its file, which does not name the instance.
- **The stack stops**: the temporary instances stop first, with the rest.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from spofless.stack._errors import StackError
from spofless.stack._kinds import host_ip, run_argv
from spofless.stack._lb_admin import admins_routing_to, remove_backend
from spofless.stack._plan import InstancePlan, StackPlan, log_path
from spofless.stack._state import lock_held
from spofless.topology import HealthCheck, Instance, ServiceComponent

logger = logging.getLogger(__name__)

__all__ = ["Temporaries", "Temporary", "free_port", "temporary_plan"]

# How long a removal waits for the load balancers to drain the instance.
DRAIN_BOUND = 60.0
REAP_EVERY = 1.0  # one machine: how often the rollout lock is looked at


@dataclass(frozen=True, slots=True)
class Temporary:
    """A temporary instance this supervisor runs, and the rollout it belongs to."""

    plan: InstancePlan
    token: int  # the create revision of the etcd lock it was started under; 0: one machine


def free_port(ip: str) -> int:
    """A port nothing listens on at `ip` now (the kernel's choice)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
            s.bind((ip, 0))
            return int(s.getsockname()[1])
    except OSError:  # not an address of this namespace (the lab's): any free one here
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def temporary_plan(
    plan: StackPlan, name: str, host: str | None, run: str | None, port: int
) -> InstancePlan:
    """The plan of temporary instance `name` (`web/2`) on `host`, listening on `port`,
    running `run` (None: the component's `run:`). StackError naming what is wrong when
    `name` is not a new instance of a service this supervisor can run on `host`."""
    topology = plan.topology
    component, _, index_text = name.rpartition("/")
    comp = topology.components.get(component)
    if not isinstance(comp, ServiceComponent) or comp.run is None:
        raise StackError(f"surge: {name}: {component!r} is not a service this stack runs")
    if not index_text.isdigit() or int(index_text) < len(topology.instances[component]):
        raise StackError(
            f"surge: {name}: a temporary instance is numbered after the file's "
            f"{len(topology.instances[component])} instances of {component}"
        )
    hosted = topology.instances[component][0].host is not None
    if hosted and (host not in topology.hosts or (plan.hosts and host not in plan.hosts)):
        mine = ", ".join(plan.hosts) if plan.hosts else "every host"
        raise StackError(f"surge: {name}: host {host!r} is not one this supervisor runs ({mine})")
    if not hosted and host is not None:
        raise StackError(f"surge: {name}: {component} runs on no named host, not on {host!r}")
    siblings = [i for i in plan.instances if i.host == host]
    if plan.lab is not None and not siblings:
        raise StackError(f"surge: {name}: nothing runs on {host} here to run it beside")
    inst = Instance(component, int(index_text), host, 1.0)
    try:
        argv = run_argv(topology, inst, plan.state_dir, run or comp.run, port)
    except ValueError as exc:
        raise StackError(f"surge: {name}: {exc}") from None
    ip = host_ip(topology, inst)
    env = {"SPOFLESS_COMPONENT": component, "SPOFLESS_INSTANCE": index_text}
    same = next((i for i in plan.instances if i.component == component), None)
    if same is not None and "SPOFLESS_TOPOLOGY" in same.env:
        env["SPOFLESS_TOPOLOGY"] = same.env["SPOFLESS_TOPOLOGY"]
    elif topology.file is not None:
        env["SPOFLESS_TOPOLOGY"] = str(topology.file.resolve())
    cwd = same.cwd if same is not None else (topology.file.parent if topology.file else Path.cwd())
    return InstancePlan(
        component=component,
        index=int(index_text),
        host=host,
        kind=comp.kind,
        argv=argv,
        env={**env, **comp.env},
        cwd=cwd,
        bind_ip=ip,
        ports=(("main", port),),
        address=f"{ip}:{port}",
        health=comp.health or HealthCheck(type="tcp"),
        log_path=log_path(plan.state_dir, component, int(index_text)),
        needs=tuple(comp.needs),
        health_port=port,
        wrapper=siblings[0].wrapper if siblings else (),
    )


class Temporaries:
    """The temporary instances one supervisor runs (the rules: the module docstring).

    `start` and `stop` are the supervisor's: start an instance beside its plan (its
    pid), stop one and forget it."""

    def __init__(
        self,
        plan: StackPlan,
        start: Callable[[InstancePlan], Awaitable[int]],
        stop: Callable[[str], Awaitable[None]],
    ) -> None:
        self.plan = plan
        self._start = start
        self._stop = stop
        self.running: dict[str, Temporary] = {}
        self._lock = asyncio.Lock()  # one start or removal at a time

    def tokens(self) -> dict[str, int]:
        """Each temporary instance and the token of the lock it was started under."""
        return {n: t.token for n, t in self.running.items()}

    async def surge(
        self, name: str, host: str | None, run: str | None, token: int
    ) -> tuple[int, str]:
        """Start temporary instance `name` on `host` on a free port, running `run` (None:
        the component's command), for the rollout holding lock `token` (0: the state
        dir's). Its pid and address. StackError when it cannot."""
        async with self._lock:
            if name in self.running:
                raise StackError(f"surge: {name} runs here already")
            ip = next((i.bind_ip for i in self.plan.instances if i.host == host), "127.0.0.1")
            inst = temporary_plan(self.plan, name, host, run, free_port(ip))
            pid = await self._start(inst)
            self.running[name] = Temporary(inst, token)
            assert inst.address is not None
            logger.info("%s: temporary instance, pid %d on %s", name, pid, inst.address)
            return pid, inst.address

    async def unsurge(self, name: str) -> None:
        """Remove temporary instance `name`: out of every load balancer that routes to its
        component (drained first), then stopped and forgotten. Nothing if unknown."""
        async with self._lock:
            temp = self.running.get(name)
            if temp is None:
                return
            topology = self.plan.topology
            admins, _ = admins_routing_to(topology, temp.plan.component, None)
            async with httpx.AsyncClient(timeout=2.0) as client:
                missed = await remove_backend(client, admins, name, DRAIN_BOUND)
            if missed:
                logger.warning("%s: not removed from %s (no answer)", name, ", ".join(missed))
            await self._stop(name)
            del self.running[name]
            logger.info("%s: temporary instance removed", name)

    async def reap(self, lock_token: int) -> None:
        """Remove the temporary instances not started under lock `lock_token` (0: none
        held): their rollout has ended."""
        for name, token in self.tokens().items():
            if token != lock_token:
                logger.info("%s: the rollout that started it is gone: removing it", name)
                await self.unsurge(name)

    async def reap_local(self) -> None:
        """One machine: every second, remove them all once no rollout holds the lock."""
        lock = self.plan.state_dir / "rollout.lock"
        while True:
            await asyncio.sleep(REAP_EVERY)
            if self.running and not lock_held(lock):
                try:
                    await self.reap(-1)
                except Exception:  # a bug here must not end the reaping for good
                    logger.exception("temporary instances: removing them failed")

    async def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """The control socket's `surge` and `unsurge` (spofless.stack._control)."""
        name = req.get("instance")
        if not isinstance(name, str):
            raise StackError(f"{req.get('op')}: give `instance` (web/2)")
        if req.get("op") == "unsurge":
            await self.unsurge(name)
            return {"ok": True}
        host, run = req.get("host"), req.get("run")
        if not isinstance(host, str | None) or not isinstance(run, str | None):
            raise StackError("surge: `host` and `run` are strings or null")
        pid, address = await self.surge(name, host, run, 0)
        return {"ok": True, "pid": pid, "address": address}
