"""The supervisor: starts the planned instances, restarts them, records their state.

One asyncio task per instance runs its process and restarts it as
`_policy.decide_exit` says; one task per instance probes its health; one task
writes the state file when anything changed. Startup goes component by
component in dependency order, waiting (bounded) for what a component needs
to be healthy, so a service that needs etcd starts after etcd has quorum.
Any failure during startup stops everything already started (no half-started
system); after startup, failures are the instances' business: restarts,
crash loops shown as `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from spofless.health import Detector, Status, run_check
from spofless.stack import _policy as policy
from spofless.stack._control import ControlServer, argv_of
from spofless.stack._errors import StackError, StartError
from spofless.stack._etcd import member_role, record_scheme
from spofless.stack._plan import InstancePlan, StackPlan
from spofless.stack._process import spawn, stop_groups
from spofless.stack._roles import Roles
from spofless.stack._rollout_agent import RolloutAgent, rollout_agent
from spofless.stack._state import SupervisorLock, instance_doc, write_state
from spofless.stack._surge import Temporaries
from spofless.stack._vip import follow_claim, vip_components
from spofless.stack._waits import DependencyWait, client_context, dependency_waits

logger = logging.getLogger(__name__)

# How often a healthy etcd member is asked whether it leads (for `status`).
ROLE_INTERVAL = 1.0
# Kinds run by an agent with an API that says the member's role (PostgreSQL, Redis).
AGENT_KINDS = frozenset({"postgres", "cache"})

Phase = Literal["starting", "running", "stopping", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    restart: policy.RestartPolicy = field(default_factory=policy.RestartPolicy)
    # Bound on startup: waiting for what a component needs, and for every instance to spawn.
    start_timeout: float = 60.0
    # SIGTERM, then SIGKILL after this long (etcd and most servers stop well within it).
    stop_grace: float = 10.0


class Supervisor:
    """Runs one StackPlan until asked to stop (SIGTERM/SIGINT or `request_stop`)."""

    def __init__(
        self,
        plan: StackPlan,
        settings: SupervisorSettings | None = None,
        on_change: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.plan = plan
        self.settings = settings or SupervisorSettings()
        self.on_change = on_change
        self.phase: Phase = "starting"
        self.error: str | None = None
        self.started_at = time.time()
        self.states = {i.name: policy.InstanceState() for i in plan.instances}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._pgids: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.roles = Roles(plan.state_dir, self._mark)  # what each instance's role is
        # Instances replaced through the control socket run this plan instead of the file's.
        self._overrides: dict[str, InstancePlan] = {}
        # An instance being replaced: set when its new process runs (or failed to start).
        self._replacing: dict[str, asyncio.Event] = {}
        self._supervisors: dict[str, asyncio.Task[None]] = {}
        self._agent: RolloutAgent | None = None  # rollouts through etcd (with an etcd)
        # Instances beside the plan: a rollout's temporary ones (spofless.stack._surge).
        self._extra: dict[str, InstancePlan] = {}
        self.temporaries = Temporaries(plan, self.add_instance, self.drop_instance)
        self._checks: dict[str, asyncio.Task[None]] = {}  # each instance's health task

    # -- running ---------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, supervise until stopped, stop everything. 0 ok, 1 startup failed."""
        lock = SupervisorLock(self.plan.state_dir)
        if not lock.acquire():
            raise StackError(
                f"another supervisor already runs from {self.plan.state_dir}; "
                "run `spofless down` first"
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        writer = asyncio.create_task(self._write_loop())
        control = ControlServer(self.plan.state_dir, self._control)
        try:
            self._write()
            try:
                await self._start_all()
            except StartError as exc:
                self.phase, self.error = "failed", str(exc)
                logger.error("startup failed: %s", exc)
            else:
                self.phase = "running"
                self._mark()
                logger.info("all %d instances started", len(self.plan.instances))
                await control.start()
                self._agent = rollout_agent(self.plan, self)
                if self._agent is not None:
                    self._tasks.append(asyncio.create_task(self._agent.run()))
                else:  # one machine: the state dir's rollout lock says whether it runs
                    self._tasks.append(asyncio.create_task(self.temporaries.reap_local()))
                for lb, indexes in vip_components(self.plan.instances).items():
                    follow = follow_claim(self.plan.topology, lb, indexes, self.roles.vip_seen)
                    self._tasks.append(asyncio.create_task(follow))
                await self._stop.wait()
        finally:
            failed = self.phase == "failed"
            if not failed:
                self.phase = "stopping"
                self._mark()
            await control.close()
            await self._stop_all()
            self.phase = "failed" if failed else "stopped"
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._write()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            lock.release()
        return 1 if failed else 0

    def request_stop(self) -> None:
        logger.info("stop requested")
        self._stop.set()

    async def _start_all(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        by_component: dict[str, list[InstancePlan]] = {}
        for inst in self.plan.instances:
            by_component.setdefault(inst.component, []).append(inst)
        for component, instances in by_component.items():
            for wait in dependency_waits(self.plan.topology, component, instances[0].needs):
                await self._wait_for(wait, deadline)
            for inst in instances:
                if self._stop.is_set():
                    raise StartError("stopped while starting")
                await self._start_first(inst)

    async def _start_first(self, inst: InstancePlan) -> None:
        try:
            await self._spawn(inst, restart=False)
        except OSError as exc:
            message = f"{inst.name}: cannot start {inst.argv[0]!r}: {exc.strerror or exc}"
            self._set(inst.name, policy.on_spawn_failed(self.states[inst.name], message))
            raise StartError(message) from None
        self._watch_exits(inst.name)
        if inst.health is not None:
            task = asyncio.create_task(self._watch_health(inst))
            self._checks[inst.name] = task
            self._tasks.append(task)

    async def _wait_for(self, wait: DependencyWait, deadline: float) -> None:
        logger.info("waiting for %s", wait.describe())
        context = client_context(wait.tls, wait.dependency)
        while True:
            results = await asyncio.gather(
                *(run_check(wait.check, ip, port, tls=context) for ip, port in wait.addresses)
            )
            healthy = sum(r.ok for r in results)
            if healthy >= wait.required:
                logger.info("%s: %d of %d healthy", wait.dependency, healthy, len(results))
                return
            if time.monotonic() >= deadline:
                raise StartError(wait.failure(healthy, self.settings.start_timeout))
            if self._stop.is_set():
                raise StartError("stopped while starting")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait.check.interval):
                    await self._stop.wait()

    async def _spawn(self, inst: InstancePlan, restart: bool) -> None:
        if inst.data_dir is not None:
            inst.data_dir.mkdir(parents=True, exist_ok=True)
            if inst.kind == "etcd":
                record_scheme(inst.data_dir, inst.argv)
        proc = await spawn(inst.command, inst.env, inst.cwd, inst.log_path)
        self._procs[inst.name] = proc
        self._pgids[inst.name] = proc.pid
        state = policy.on_spawned(self.states[inst.name], proc.pid, time.time(), restart)
        if inst.health is None:
            state = policy.on_running_without_check(state)
        self._set(inst.name, state)
        logger.info("%s: started pid %d%s", inst.name, proc.pid, " (restart)" if restart else "")

    def _watch_exits(self, name: str) -> None:
        task = asyncio.create_task(self._supervise(name))
        self._supervisors[name] = task
        self._tasks.append(task)

    def _current(self, name: str) -> InstancePlan:
        """The plan an instance runs now: the file's, or the one a replacement gave it
        (or a temporary instance's own)."""
        if name in self._overrides:
            return self._overrides[name]
        if name in self._extra:
            return self._extra[name]
        return self.plan.instance(name)

    async def _supervise(self, name: str) -> None:
        while True:
            proc = self._procs[name]
            returncode = await proc.wait()
            if self._stop.is_set():
                return
            replaced = self._replacing.get(name)
            if replaced is not None:
                # Stopped on purpose: the replacement's process is the one to watch now.
                await replaced.wait()
                if self._procs[name] is proc:
                    return  # the replacement did not start (its state says why)
                continue
            new, decision = policy.decide_exit(
                self.states[name], returncode, time.time(), self.settings.restart
            )
            self._set(name, new)
            (logger.warning if decision.restart else logger.error)("%s: %s", name, decision.reason)
            if not decision.restart:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(decision.delay):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            inst = self._current(name)
            try:
                await self._spawn(inst, restart=True)
            except OSError as exc:
                message = f"cannot restart {inst.argv[0]!r}: {exc.strerror or exc}"
                self._set(name, policy.on_spawn_failed(self.states[name], message))
                logger.error("%s: %s", name, message)
                return

    # -- replacing an instance (the control socket) ------------------------------

    async def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "commands":
            names = [i.name for i in self.plan.instances]
            return {"ok": True, "commands": {n: list(self._current(n).argv) for n in names}}
        if op == "replace":
            name = req.get("instance")
            if not isinstance(name, str) or name not in self.states:
                raise StackError(f"replace: no instance {name!r} runs here")
            pid, previous = await self.replace(name, argv_of(req.get("argv"), "replace"))
            return {"ok": True, "pid": pid, "previous_argv": list(previous)}
        if op in ("surge", "unsurge"):
            return await self.temporaries.control(req)
        raise StackError(f"unknown op {op!r}: replace, surge, unsurge or commands")

    # -- instances beside the plan (temporary ones: spofless.stack._surge) ---------

    async def add_instance(self, inst: InstancePlan) -> int:
        """Start `inst`, which the plan does not have, and supervise it like the others;
        its pid. StackError when the stack is not running or it cannot start."""
        if self.phase != "running" or self._stop.is_set():
            raise StackError(f"the stack is {self.phase}, not running: nothing is started")
        if inst.name in self.states:
            raise StackError(f"{inst.name} runs here already")
        self.states[inst.name] = policy.InstanceState()
        self._extra[inst.name] = inst
        try:
            await self._start_first(inst)
        except StartError as exc:
            self._drop(inst.name)
            raise StackError(str(exc)) from None
        return self._procs[inst.name].pid

    async def drop_instance(self, name: str) -> None:
        """Stop instance `name` added by `add_instance` and forget it (the stack stopping
        stops it with the rest)."""
        if self._stop.is_set():
            return
        for task in (self._supervisors.get(name), self._checks.get(name)):
            if task is not None:
                task.cancel()
        pgid, proc = self._pgids.get(name), self._procs.get(name)
        if pgid is not None and proc is not None and proc.returncode is None:
            await stop_groups([pgid], self.settings.stop_grace)
        if proc is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await proc.wait()
        self._drop(name)

    def _drop(self, name: str) -> None:
        self._extra.pop(name, None)
        self.states.pop(name, None)
        self._procs.pop(name, None)
        self._pgids.pop(name, None)
        self._overrides.pop(name, None)
        self._supervisors.pop(name, None)
        self._checks.pop(name, None)
        self._mark()

    async def replace(self, name: str, argv: tuple[str, ...] | None) -> tuple[int, tuple[str, ...]]:
        """Stop instance `name` and start it again running `argv` (None: as it runs now).

        Returns the new pid and the command it ran before. Its health is judged afresh
        (`starting` until its check passes `rise` times). StackError when the stack is not
        running, the instance is being replaced already, or the command cannot start."""
        if self.phase != "running" or self._stop.is_set():
            raise StackError(f"the stack is {self.phase}, not running: nothing is replaced")
        if name in self._replacing:
            raise StackError(f"{name} is being replaced already")
        before = self._current(name)
        new = before if argv is None else dataclasses.replace(before, argv=argv)
        done = self._replacing[name] = asyncio.Event()
        try:
            logger.info("%s: replacing its process (%s)", name, " ".join(new.argv))
            pgid = self._pgids.get(name)
            proc = self._procs.get(name)
            if pgid is not None and proc is not None and proc.returncode is None:
                for killed in await stop_groups([pgid], self.settings.stop_grace):
                    logger.warning(
                        "%s: process group %d did not stop on SIGTERM; killed", name, killed
                    )
            if proc is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await proc.wait()
            self._overrides[name] = new
            try:
                await self._spawn(new, restart=False)
            except OSError as exc:
                message = f"cannot start {new.argv[0]!r}: {exc.strerror or exc}"
                self._set(name, policy.on_spawn_failed(self.states[name], message))
                raise StackError(f"{name}: {message}") from None
        finally:
            del self._replacing[name]
            done.set()
        watcher = self._supervisors.get(name)
        if watcher is None or watcher.done():
            self._watch_exits(name)  # it had stopped for good before: watch the new one
        return self._procs[name].pid, before.argv

    async def _watch_health(self, inst: InstancePlan) -> None:
        assert inst.health is not None
        check = inst.health
        port = inst.health_port
        detector: Detector | None = None
        watched_pid: int | None = None
        next_role = 0.0
        context = client_context(inst.health_tls, inst.name)
        while not self._stop.is_set():
            state = self.states[inst.name]
            if state.state != "up":
                self.roles.members.pop(inst.name, None)
            if state.state not in ("starting", "up", "down"):
                self.roles.forget_agent(inst.name)
            if state.pid is not None and state.state in ("starting", "up", "down"):
                if state.pid != watched_pid:  # a new process: judge it afresh
                    detector, watched_pid = Detector(check.fall, check.rise), state.pid
                assert detector is not None
                result = await run_check(check, inst.bind_ip, port, tls=context)
                change = detector.observe(result.ok, definite=result.definite, detail=result.detail)
                if inst.kind == "etcd" and result.ok and time.monotonic() >= next_role:
                    role = await member_role(inst.bind_ip, port, inst.health_tls)
                    self.roles.members[inst.name] = role
                    next_role = time.monotonic() + ROLE_INTERVAL
                if inst.kind in AGENT_KINDS and time.monotonic() >= next_role:
                    # Also while its server is down: the agent says why (demoting, starting).
                    await self.roles.observe_agent(inst)
                    next_role = time.monotonic() + ROLE_INTERVAL
                current = self.states[inst.name]
                if change is not None and current.pid == watched_pid:
                    healthy = change.new is Status.UP
                    self._set(inst.name, policy.on_health(current, healthy))
                    logger.info(
                        "%s: %s (%s)",
                        inst.name,
                        "healthy" if healthy else "failing its health check",
                        change.reason,
                    )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(check.interval):
                    await self._stop.wait()

    async def _stop_all(self) -> None:
        self._stop.set()
        if self._pgids:
            logger.info("stopping %d process groups", len(self._pgids))
        # An etcd leader that stops hands leadership to a connected peer and waits for it
        # (seconds) when that peer is stopping too; alone, it stops at once. So: last.
        leaders = self.roles.leaders()
        killed: list[int] = []
        for wave in [list(self._extra), *self.plan.stop_waves(leaders)]:
            pgids = [self._pgids[n] for n in wave if n in self._pgids]
            killed += await stop_groups(pgids, self.settings.stop_grace)
        for pgid in killed:
            logger.warning("process group %d did not stop on SIGTERM; killed", pgid)
        for name, proc in list(self._procs.items()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await proc.wait()
            how = policy.describe_exit(proc.returncode) if proc.returncode is not None else None
            self.states[name] = policy.on_stopped(self.states[name], how)
        for name, state in self.states.items():
            if state.state not in ("stopped", "failed"):
                self.states[name] = policy.on_stopped(state, None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- state -----------------------------------------------------------------

    def _set(self, name: str, state: policy.InstanceState) -> None:
        self.states[name] = state
        self._mark()

    def _mark(self) -> None:
        self._changed.set()

    async def _write_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                # A heartbeat every few seconds even when nothing changes.
                async with asyncio.timeout(2.0):
                    await self._changed.wait()
            self._changed.clear()
            self._write()
            await asyncio.sleep(0.05)  # coalesce bursts of changes

    def _write(self) -> None:
        try:
            write_state(self.plan.state_dir, self.document())
        except OSError as exc:
            logger.error("cannot write the state file: %s", exc)
        if self._agent is not None:
            self._agent.changed()
        if self.on_change is not None:
            self.on_change(self)

    def document(self) -> dict[str, Any]:
        """The state file's content (see `_status.py` for the reader)."""
        plan = self.plan
        return {
            "topology": plan.topology.name,
            "file": plan.topology.source,
            "state_dir": str(plan.state_dir),
            "hosts": list(plan.hosts),
            "lab": plan.lab,
            "supervisor": {"pid": os.getpid(), "started_at": self.started_at},
            "phase": self.phase,
            "error": self.error,
            "updated_at": time.time(),
            "skipped": [{"component": s.component, "reason": s.reason} for s in plan.skipped],
            "instances": [self._instance_doc(i) for i in plan.instances]
            + [{**self._instance_doc(i), "temporary": True} for i in self._extra.values()],
        }

    def _instance_doc(self, inst: InstancePlan) -> dict[str, Any]:
        s = self.states[inst.name]
        doc = instance_doc(
            inst,
            state=s.state,
            pid=s.pid,
            pgid=self._pgids.get(inst.name),
            health=s.health if inst.health is not None else "none",
            role=self.roles.role(inst.name) if s.state in ("up", "down") else None,
            started_at=s.started_at,
            restarts=s.restarts,
            last_exit=s.last_exit,
            message=s.message,
        )
        if inst.kind in AGENT_KINDS:
            live = s.state in ("starting", "up", "down")
            doc.update(self.roles.agent_doc(inst, live, s.pid))
        return doc
