"""What a rollout's steps wait on: an instance doing its job, its failed responses."""

from __future__ import annotations

import asyncio
import time

import httpx

from spofless.rollout._types import Prepared
from spofless.stack._lb_admin import LbAdmin, errors_of

__all__ = ["wait_whole", "watch_failures"]

POLL = 0.1


async def watch_failures(
    client: httpx.AsyncClient,
    admins: list[LbAdmin],
    name: str,
    before: tuple[int, int],
    seconds: float,
) -> int:
    """Failed responses from `name` in the `seconds` after readmission (0: none)."""
    if not admins or seconds <= 0:
        return 0
    deadline = time.monotonic() + seconds
    failed = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(min(0.25, seconds))
        _, now_failed = await errors_of(client, admins, name)
        failed = max(0, now_failed - before[1])
        if failed:
            break
    return failed


async def wait_whole(p: Prepared, name: str, pid: int, bound: float) -> str | None:
    """Wait until instance `name` runs process `pid` and does its job (health check
    passed `rise` times; a PostgreSQL member: primary or streaming replica again).
    None when it does; why not, after `bound` seconds or when it failed."""
    deadline = time.monotonic() + bound
    last = "no state yet"
    while time.monotonic() < deadline:
        inst = next(
            (i for i in await p.coord.instances(strict=False) if i.get("name") == name), None
        )
        if inst is not None:
            own = inst.get("agent_pid", inst.get("pid"))
            last = f"{inst.get('state')} (health {inst.get('health')})"
            if inst.get("state") == "failed":
                return f"it failed: {inst.get('message') or inst.get('last_exit')}"
            if own == pid and inst.get("state") == "up":
                if inst.get("kind") != "postgres" or inst.get("role") in ("primary", "replica"):
                    return None
                last = f"up but {inst.get('role') or 'without a role'}: {inst.get('reason')}"
        await asyncio.sleep(POLL)
    return f"not healthy within {bound:g}s: {last}"
