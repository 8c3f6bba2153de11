"""A rollout's temporary instances (`--surge N`): started and served first, removed last
(the rules: spofless.stack._surge; the order: spofless.rollout.run)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from spofless.rollout._errors import RolloutError
from spofless.rollout._gates import wait_whole, watch_failures
from spofless.rollout._types import Prepared, RolloutOptions, StepResult
from spofless.rollout.plan import Step
from spofless.stack._coord import RolloutRecord
from spofless.stack._errors import StackError
from spofless.stack._lb_admin import LbAdmin, LbAdminError, add_backend, wait_serving

__all__ = ["keep_served", "remove_surge", "surge", "unsurge"]

START_BOUND = 60.0  # the supervisor's answer: a start
# The supervisor's answer to a removal: the load balancers' drain (bounded by 60 s), a stop.
UNSURGE_BOUND = 90.0


async def surge(
    p: Prepared,
    step: Step,
    opts: RolloutOptions,
    client: httpx.AsyncClient,
    record: RolloutRecord,
    served: dict[str, str],
    say: Callable[[str], None],
) -> StepResult:
    """Start temporary instance `step.instance`, healthy `rise` times, then in every load
    balancer in front of the component and up there, its responses watched; `served`
    gets its address once it serves."""
    start = time.monotonic()
    name = step.instance
    record.surge.append(name)  # recorded before: a kill midway must not lose it
    record.phase = "surging"
    await p.coord.save(record)
    pid, address = await p.coord.surge(name, step.host, opts.run, START_BOUND)
    r = StepResult(name, "surge", "started", 0.0, pid=pid, detail=f"temporary, on {address}")
    why = await wait_whole(p, name, pid, opts.health_timeout)
    admins = list(p.admins)
    if why is None and admins:
        try:
            await add_backend(client, admins, p.component, name, address)
        except httpx.HTTPError as exc:
            raise RolloutError(f"{name}: a load balancer did not take it: {exc}") from None

        async def again(a: LbAdmin) -> None:
            say(f"{a.name} no longer has {name} (restarted?): adding it again")
            await add_backend(client, [a], p.component, name, address)

        why = await wait_serving(client, admins, name, opts.health_timeout, again)
        if why is None:
            served[name] = address
            r.failed_responses = await watch_failures(client, admins, name, (0, 0), opts.watch)
            if r.failed_responses:
                why = f"{r.failed_responses} failed responses once it served"
    if why is not None:
        r.outcome, r.detail = "stopped", why
    r.seconds = time.monotonic() - start
    return r


async def unsurge(p: Prepared, step: Step, record: RolloutRecord) -> StepResult:
    """Remove temporary instance `step.instance`: its supervisor has the load balancers
    drain and drop it, then stops it."""
    start = time.monotonic()
    await p.coord.unsurge(step.instance, UNSURGE_BOUND)
    if step.instance in record.surge:
        record.surge.remove(step.instance)
        await p.coord.save(record)
    return StepResult(step.instance, "unsurge", "removed", time.monotonic() - start)


async def remove_surge(p: Prepared, record: RolloutRecord, say: Callable[[str], None]) -> None:
    """On the way out: remove the temporary instances still there. One that cannot be
    (its lock lost, its supervisor silent) is removed by its supervisor once it sees
    this rollout gone."""
    for name in list(record.surge):
        try:
            await p.coord.unsurge(name, UNSURGE_BOUND)
        except (RolloutError, StackError) as exc:
            say(f"{name}: not removed ({exc}); its supervisor removes it once this rollout ends")
            continue
        record.surge.remove(name)
        say(f"{name}: temporary instance removed")


async def keep_served(
    p: Prepared,
    client: httpx.AsyncClient,
    served: dict[str, str],
    bound: float,
    say: Callable[[str], None],
) -> None:
    """Before an instance is taken out: every load balancer still has the temporary
    instances `served` (name -> address). One restarted since starts from its file,
    without them: they are added to it again and must be up there first. RolloutError
    when that cannot be (the redundancy the step counts on is not there)."""
    for a in p.admins:
        try:
            have = (await a.status(client))["backends"]
        except (httpx.HTTPError, LbAdminError):
            continue  # not answering: not serving either; its drain will say so
        for name, address in served.items():
            if name in have:
                continue
            say(f"{a.name} no longer has {name} (restarted?): adding it again")
            try:
                await add_backend(client, [a], p.component, name, address)
            except (httpx.HTTPError, LbAdminError) as exc:
                raise RolloutError(f"{name}: {a.name} did not take it again: {exc}") from None
            why = await wait_serving(client, [a], name, bound)
            if why is not None:
                raise RolloutError(why)
