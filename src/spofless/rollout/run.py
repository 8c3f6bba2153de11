"""Running a rollout against a stack started with `spofless up`.

One instance at a time, each step gated on what the system reports, never on
a sleep:

1. plan (spofless.rollout.plan): refused when a step would open a single point
   of failure, unless allowed;
2. drain: every load balancer routing to the instance stops sending it requests
   and its open ones finish (spofless.rollout._lbs);
3. replace: the supervisor stops the instance and starts it again, with the new
   command (`--run`) or as the file says (spofless.stack's control socket);
4. wait until its health check passes `rise` times (a PostgreSQL member: until
   it streams again), then put it back in rotation and watch the load
   balancers' counters for its failed responses for a short window;
5. on a failed health check or failed responses: roll that instance back to its
   previous command and stop (`on_failure: rollback`), or stop where it is
   (`pause`). The other instances are untouched.

For PostgreSQL the primary moves last, after a switchover to a streaming
replica (spofless.pg.ops), whose write pause is measured.

With `--surge N` (kind service, Kubernetes' maxSurge), N temporary instances
start first (spofless.stack._surge: on a free port of the host where the
component runs least, running the new command): each must pass its health check
`rise` times, is added to every load balancer in front of the component and must
be seen up by each of them, and its responses are watched like a readmitted
instance's. Only then are the others replaced, one at a time, with redundancy
kept (before each, a load balancer restarted meanwhile, which starts from its
file, gets the temporary ones again); they are drained and removed last. Whatever ends the rollout
early, they are removed too: by the rollout on its way out, or, when it cannot
(killed, its lock lost), by their supervisor once it sees the rollout gone.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from spofless.rollout._coordination import Coordination
from spofless.rollout._errors import RolloutError
from spofless.rollout._gates import wait_whole, watch_failures
from spofless.rollout._surge import keep_served, remove_surge, surge, unsurge
from spofless.rollout._types import Prepared, RolloutOptions, RolloutResult, StepResult
from spofless.rollout.plan import Step, plan_rollout
from spofless.stack._coord import RolloutRecord
from spofless.stack._errors import StackError
from spofless.stack._kinds import run_argv
from spofless.stack._lb_admin import (
    Drain,
    admins_routing_to,
    drain,
    enable,
    errors_of,
)
from spofless.topology import ServiceComponent, Topology, instance_at

__all__ = ["Prepared", "RolloutOptions", "RolloutResult", "StepResult", "prepare", "rollout"]

POLL = 0.1
REPLACE_BOUND = 60.0  # the supervisor's answer: a stop (grace, then SIGKILL) and a start


async def prepare(
    topology: Topology,
    state_dir: Path,
    coord: Coordination,
    component: str,
    opts: RolloutOptions,
) -> Prepared:
    """Check that the rollout can start, and plan it. RolloutError (the user's to fix)
    when the component is unknown or not running, or a step would open a single point
    of failure that is not allowed."""
    comp = topology.components.get(component)
    if comp is None:
        raise RolloutError(
            f"no component {component!r} in {topology.source}; "
            f"components: {', '.join(sorted(topology.components))}"
        )
    if opts.run is not None and not isinstance(comp, ServiceComponent):
        raise RolloutError(
            f"--run replaces a service's command; {component} is kind {comp.kind}: "
            "a rollout of it restarts each instance with the file's settings"
        )
    if opts.surge and not isinstance(comp, ServiceComponent):
        raise RolloutError(
            f"--surge starts temporary instances of a service; {component} is kind {comp.kind}"
        )
    instances = await coord.instances()
    why_not = await coord.not_running(component)
    if why_not is not None:
        raise RolloutError(why_not)
    mine = [i for i in instances if i.get("component") == component]
    # An instance that is not up goes first (a repair); the others are replaced once it is.
    down = {i["name"] for i in mine if i.get("state") != "up"}
    roles = {i["name"]: i.get("role") for i in instances}
    plan = plan_rollout(topology, component, roles, down, opts.surge)
    if plan.refusals and not opts.allow_spof:
        lines = "; ".join(s.describe() for s in plan.refusals)
        surge = (
            ", pass --surge 1 to start a temporary one for the rollout,"
            if isinstance(comp, ServiceComponent) and not opts.surge
            else ""
        )
        raise RolloutError(
            f"{lines}. Add an instance first{surge} or pass --allow-spof to accept it "
            "for the rollout"
        )
    running = {i["name"] for i in instances if i.get("state") == "up"}
    admins, blind = admins_routing_to(topology, component, running)
    if blind:
        raise RolloutError(
            f"{', '.join(blind)} route to {component} without an admin API to drain it: "
            "give the load balancer `admin_port:`"
        )
    return Prepared(topology, state_dir, coord, component, plan, tuple(admins))


async def rollout(
    p: Prepared, opts: RolloutOptions, say: Callable[[str], None] = lambda _: None
) -> RolloutResult:
    """Run the prepared rollout; the result says what happened to each step.

    One rollout per system at a time (RolloutError otherwise). Whatever ends it (a
    failure, Ctrl-C, SIGTERM, `--abort`, its lock lost), every instance it drained is
    put back in rotation before it returns; one left drained by a rollout that was
    killed is put back before this one starts (with etcd: by the supervisors, at once)."""
    result = RolloutResult(p.component, p.plan)
    record = RolloutRecord(os.getpid(), p.component, time.time(), len(p.plan.steps))
    await p.coord.begin(record, say)
    task = asyncio.current_task()
    stopped: list[str] = []

    def stop(why: str) -> None:
        if not stopped and task is not None:
            stopped.append(why)
            task.cancel()

    p.coord.on_stop(stop)
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            try:
                await _steps(p, opts, client, record, result, say)
            except asyncio.CancelledError:
                result.error = stopped[0] if stopped else "aborted"
                record.phase = "aborted"
                say(result.error)
            finally:
                stopped.append("ending")  # readmitting below is not to be cancelled
                for name in list(record.drained):
                    await enable(client, list(p.admins), name)
                    record.drained.remove(name)
                    say(f"{name}: back in rotation")
                await remove_surge(p, record, say)
                if not record.finished:
                    record.phase = "done" if result.ok else "failed"
    finally:
        await p.coord.end(record)
    return result


async def _steps(
    p: Prepared,
    opts: RolloutOptions,
    client: httpx.AsyncClient,
    record: RolloutRecord,
    result: RolloutResult,
    say: Callable[[str], None],
) -> None:
    served: dict[str, str] = {}  # the temporary instances serving, and their addresses
    for i, step in enumerate(p.plan.steps):
        if i and opts.pause_between and step.action == "replace":
            await asyncio.sleep(opts.pause_between)
        record.step, record.instance, record.phase = i + 1, step.instance, step.action
        await p.coord.save(record)
        say(step.describe())
        try:
            if step.action == "switchover":
                r = await _switchover(p, step)
            elif step.action == "handover":
                r = await _handover(p, step, opts)
            elif step.action == "surge":
                r = await surge(p, step, opts, client, record, served, say)
            elif step.action == "unsurge":
                served.pop(step.instance, None)
                r = await unsurge(p, step, record)
            else:
                await keep_served(p, client, served, opts.health_timeout, say)
                r = await _replace(p, step, opts, client, record, say)
        except (RolloutError, StackError) as exc:
            result.error = str(exc)
            say(f"stopped: {exc}")
            return
        result.steps.append(r)
        say(f"{r.instance}: {r.outcome} in {r.seconds:.1f}s" + _extra(r))
        if r.outcome not in ("replaced", "switched over", "handed over", "started", "removed"):
            result.error = f"{r.instance}: {r.outcome}: {r.detail}"
            return


def _extra(r: StepResult) -> str:
    parts = []
    if r.drain_seconds is not None:
        parts.append(f"drained in {r.drain_seconds:.2f}s")
    if r.cut:
        parts.append(f"{r.cut} requests cut at the drain timeout")
    return f" ({', '.join(parts)})" if parts else ""


async def _replace(
    p: Prepared,
    step: Step,
    opts: RolloutOptions,
    client: httpx.AsyncClient,
    record: RolloutRecord,
    say: Callable[[str], None],
) -> StepResult:
    start = time.monotonic()
    name = step.instance
    admins = list(p.admins)
    argv = None
    if opts.run is not None:
        try:
            component, _, index = name.rpartition("/")
            inst = instance_at(p.topology, component, int(index))
            argv = tuple(run_argv(p.topology, inst, p.state_dir, opts.run))
        except ValueError as exc:
            raise RolloutError(f"--run: {exc}") from None
    d: Drain | None = None
    if admins:
        record.drained.append(name)  # recorded before: a kill midway must not lose it
        record.phase = "draining"
        await p.coord.save(record)
        d = await drain(client, admins, name, opts.drain_timeout)
    record.phase = "replacing"
    await p.coord.save(record)
    if d is not None and d.unreachable:
        say(f"{', '.join(d.unreachable)} did not answer: not drained")
    pid, previous = await p.coord.replace(name, argv, REPLACE_BOUND, opts.run)
    r = StepResult(name, "replace", "replaced", 0.0, pid=pid)
    if d is not None:
        r.drain_seconds, r.cut = d.seconds, d.cut
    why = await wait_whole(p, name, pid, opts.health_timeout)
    if why is None:
        before = await errors_of(client, admins, name)
        await enable(client, admins, name)
        await _undrained(p, record, name)
        r.failed_responses = await watch_failures(client, admins, name, before, opts.watch)
        if r.failed_responses:
            why = f"{r.failed_responses} failed responses after it was readmitted"
    if why is not None:
        r.detail = why
        if opts.on_failure == "rollback" and argv is not None:
            say(f"{name}: {why}; rolling it back")
            if admins:
                await drain(client, admins, name, opts.drain_timeout)
            back_pid, _ = await p.coord.replace(name, previous, REPLACE_BOUND)
            back = await wait_whole(p, name, back_pid, opts.health_timeout)
            await enable(client, admins, name)
            await _undrained(p, record, name)
            r.outcome = "rolled back" if back is None else "rollback failed"
            r.pid = back_pid
        else:
            r.outcome = "stopped"
    r.seconds = time.monotonic() - start
    return r


async def _undrained(p: Prepared, record: RolloutRecord, name: str) -> None:
    if name in record.drained:
        record.drained.remove(name)
        record.phase = "readmitted"
        await p.coord.save(record)


async def _switchover(p: Prepared, step: Step) -> StepResult:
    """Hand the primary role away from `step.instance`, to the best streaming replica."""
    from spofless.pg.ops import PgOpError, switchover, target

    start = time.monotonic()
    try:
        old, new = await switchover(target(p.topology, p.component), None, bound=60.0)
    except PgOpError as exc:
        raise RolloutError(f"switchover away from {step.instance}: {exc}") from None
    new_name = new.replace("-", "/") if new else new
    # The new primary must lead and take writes before the old one is replaced.
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        roles = {i["name"]: i.get("role") for i in await p.coord.instances(strict=False)}
        if roles.get(new_name) == "primary" and roles.get(step.instance) != "primary":
            break
        await asyncio.sleep(POLL)
    seconds = time.monotonic() - start
    return StepResult(
        step.instance, "switchover", "switched over", seconds, detail=f"{old} -> {new}"
    )


async def _handover(p: Prepared, step: Step, opts: RolloutOptions) -> StepResult:
    """The holder's VIP agent restarts: it releases the address on SIGTERM, a standby
    takes it, and the restarted agent stands by. Done when another instance holds it."""
    from spofless.stack._vip import agent_component

    start = time.monotonic()
    component, _, index = step.instance.rpartition("/")
    agent = f"{agent_component(component)}/{index}"
    agent_pid, _ = await p.coord.replace(agent, None, REPLACE_BOUND)
    deadline = time.monotonic() + opts.health_timeout
    holder = None
    while time.monotonic() < deadline:
        insts = await p.coord.instances(strict=False)
        holder = next(
            (
                i["name"]
                for i in insts
                if i.get("component") == component and i.get("role") == "vip-holder"
            ),
            None,
        )
        back: dict[str, Any] = next((i for i in insts if i.get("name") == agent), {})
        if holder not in (None, step.instance) and back.get("state") == "up":
            seconds = time.monotonic() - start
            return StepResult(
                step.instance,
                "handover",
                "handed over",
                seconds,
                pid=agent_pid,
                detail=f"{step.instance} -> {holder}",
            )
        await asyncio.sleep(POLL)
    raise RolloutError(
        f"{step.instance} kept the floating address {opts.health_timeout:g}s after its "
        f"agent restarted (holder: {holder or 'nobody'}): not replacing it"
    )
