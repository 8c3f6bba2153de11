"""The load balancers in front of a component, through their admin APIs.

Used by `spofless rollout` (drain, readmit, watch) and by the supervisors that put
back what a rollout that died left drained (spofless.stack._rollout_agent).

A rollout takes an instance out of every load balancer that routes to it
before it stops, and waits until each one has stopped sending and its open
requests have finished: the drain is complete when every worker of that load
balancer has applied the drain (`workers_view_seq` in /status reaches the
drain's `view_seq`) and the backend's `active` count, taken after it, is 0.
No fixed sleep. Readmission is `enable`: the load balancer then ramps the
instance's share up over its route's `slow_start`, as for any backend back up.

A temporary instance (`rollout --surge`) is added to every route to its component
(`add_backend`; it serves once the load balancer's own check passed `rise` times:
`wait_serving`) and removed at the end (`remove_backend`: the load balancer drains
it first; done when it has left /status).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from spofless.stack._errors import StackError
from spofless.topology import LoadBalancerComponent, Topology

__all__ = [
    "Drain",
    "LbAdmin",
    "LbAdminError",
    "add_backend",
    "admins_routing_to",
    "drain",
    "enable",
    "errors_of",
    "remove_backend",
    "wait_serving",
]

POLL = 0.05


class LbAdminError(StackError):
    """A load balancer's admin API refused a request; the message says which and why."""


@dataclass(frozen=True, slots=True)
class LbAdmin:
    """One load balancer instance's admin API."""

    name: str  # lb/0
    url: str  # http://127.0.0.1:18190
    token: str | None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def post(self, client: httpx.AsyncClient, backend: str, action: str) -> int:
        """Drain, disable or enable `backend`; the view number the change is in."""
        r = await client.post(
            f"{self.url}/backends/{quote(backend, safe='')}/{action}", headers=self._headers()
        )
        if r.status_code != 200:
            raise LbAdminError(
                f"{self.name}: {action} {backend} answered {r.status_code}: {r.text.strip()[:200]}"
            )
        return int(r.json().get("view_seq", 0))

    async def send(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST `path` (a JSON `body`); the answer. LbAdminError for anything but 2xx."""
        r = await client.post(f"{self.url}{path}", headers=self._headers(), json=body)
        if not 200 <= r.status_code < 300:
            raise LbAdminError(
                f"{self.name}: POST {path} answered {r.status_code}: {r.text.strip()[:200]}"
            )
        answer: dict[str, Any] = r.json()
        return answer

    async def status(self, client: httpx.AsyncClient) -> dict[str, Any]:
        r = await client.get(f"{self.url}/status", headers=self._headers())
        if r.status_code != 200:
            raise LbAdminError(f"{self.name}: /status answered {r.status_code}")
        data: dict[str, Any] = r.json()
        return data


@dataclass(frozen=True, slots=True)
class Drain:
    """How the drain of one backend went, over every load balancer in front of it."""

    backend: str
    seconds: float
    cut: int  # requests still open at the drain timeout (0: none cut)
    unreachable: tuple[str, ...]  # load balancers that did not answer (not drained)


def admins_routing_to(
    topology: Topology, component: str, running: set[str] | None
) -> tuple[list[LbAdmin], list[str]]:
    """The admin APIs of the running load balancer instances (None: all) with a route
    to `component`, and the names of those that route to it but cannot be drained
    (no `admin_port`: listed so that the rollout can refuse or say so)."""
    admins: list[LbAdmin] = []
    blind: list[str] = []
    for name, comp in topology.components.items():
        if not isinstance(comp, LoadBalancerComponent):
            continue
        if not any(r.to == component for r in comp.routes):
            continue
        for inst in topology.instances[name]:
            if running is not None and inst.name not in running:
                continue
            if comp.admin_port is None:
                blind.append(inst.name)
                continue
            host = topology.hosts[inst.host].address if inst.host is not None else None
            url = f"http://{host or '127.0.0.1'}:{comp.admin_port + inst.index}"
            admins.append(LbAdmin(inst.name, url, comp.admin_token))
    return admins, blind


async def drain(
    client: httpx.AsyncClient, admins: list[LbAdmin], backend: str, bound: float
) -> Drain:
    """Drain `backend` on every load balancer and wait until none sends it anything."""
    start = time.monotonic()
    seqs: dict[LbAdmin, int] = {}
    unreachable: list[str] = []
    for a in admins:
        try:
            seqs[a] = await a.post(client, backend, "drain")
        except httpx.HTTPError:
            unreachable.append(a.name)
    deadline = start + bound
    open_requests = dict.fromkeys(seqs, -1)
    while True:
        for a, seq in seqs.items():
            if open_requests[a] == 0:
                continue
            try:
                st = await a.status(client)
            except httpx.HTTPError:
                continue
            if int(st.get("workers_view_seq", 0)) >= seq:
                open_requests[a] = int(st["backends"].get(backend, {}).get("active", 0))
        if all(n == 0 for n in open_requests.values()) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL)
    cut = sum(max(n, 0) for n in open_requests.values())
    return Drain(backend, time.monotonic() - start, cut, tuple(unreachable))


async def enable(client: httpx.AsyncClient, admins: list[LbAdmin], backend: str) -> list[str]:
    """Put `backend` back in rotation everywhere; the load balancers that did not answer."""
    missed = []
    for a in admins:
        try:
            await a.post(client, backend, "enable")
        except (httpx.HTTPError, LbAdminError):
            missed.append(a.name)
    return missed


async def errors_of(
    client: httpx.AsyncClient, admins: list[LbAdmin], backend: str
) -> tuple[int, int]:
    """(requests, failed: 5xx or no response) sent to `backend`, summed over the load
    balancers that answer: counters; a rollout compares two readings."""
    requests = failed = 0
    for a in admins:
        try:
            b = (await a.status(client))["backends"].get(backend, {})
        except (httpx.HTTPError, LbAdminError):
            continue
        responses = b.get("responses", [0] * 6)
        requests += int(b.get("requests", 0))
        failed += int(responses[0]) + int(responses[5]) + int(b.get("connect_failures", 0))
    return requests, failed


async def add_backend(
    client: httpx.AsyncClient, admins: list[LbAdmin], component: str, name: str, address: str
) -> None:
    """Add backend `name` at `address` (host:port) to every route to `component` of every
    load balancer in `admins`. LbAdminError (or httpx.HTTPError) when one refuses."""
    host, _, port = address.rpartition(":")
    body = {"name": name, "host": host.strip("[]"), "port": int(port)}
    for a in admins:
        routes = (await a.status(client)).get("routes", {})
        keys = [k for k in routes if k == component or k.startswith(component + "#")]
        if not keys:
            raise LbAdminError(f"{a.name}: no route to {component} in its /status")
        for key in keys:
            await a.send(client, f"/routes/{quote(key, safe='')}/backends", body)


async def wait_serving(
    client: httpx.AsyncClient,
    admins: list[LbAdmin],
    name: str,
    bound: float,
    readd: Callable[[LbAdmin], Awaitable[None]] | None = None,
) -> str | None:
    """Wait until every load balancer in `admins` sees backend `name` up (its own check
    passed `rise` times); None then, else why not after `bound` seconds. `readd`: for a
    backend added at runtime, what adds it again to a load balancer that lacks it (one
    restarted meanwhile starts from its file, without it)."""
    deadline = time.monotonic() + bound
    waiting = {a.name: "no answer yet" for a in admins}
    while waiting and time.monotonic() < deadline:
        for a in admins:
            if a.name not in waiting:
                continue
            try:
                b = (await a.status(client))["backends"].get(name)
                if b is None and readd is not None:
                    await readd(a)
            except (httpx.HTTPError, LbAdminError) as exc:
                waiting[a.name] = f"no answer ({exc})"
                continue
            if b is not None and b.get("status") == "up":
                del waiting[a.name]
            else:
                waiting[a.name] = "absent" if b is None else f"{b.get('status')}"
        if waiting:
            await asyncio.sleep(POLL)
    if not waiting:
        return None
    each = ", ".join(f"{lb}: {why}" for lb, why in waiting.items())
    return f"{name} not up on every load balancer within {bound:g}s ({each})"


async def remove_backend(
    client: httpx.AsyncClient, admins: list[LbAdmin], name: str, bound: float
) -> list[str]:
    """Remove backend `name` from every load balancer in `admins` (each drains it first)
    and wait until it has left them all; the load balancers that did not answer or still
    had it after `bound` seconds (none has it after a restart: it starts from its file)."""
    pending: list[LbAdmin] = []
    missed: list[str] = []
    for a in admins:
        try:
            await a.send(client, f"/backends/{quote(name, safe='')}/remove")
            pending.append(a)
        except LbAdminError as exc:
            if " answered 404" not in str(exc):  # 404: it has none (any more)
                missed.append(a.name)
        except httpx.HTTPError:
            missed.append(a.name)
    deadline = time.monotonic() + bound
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        for a in list(pending):
            try:
                if name not in (await a.status(client))["backends"]:
                    pending.remove(a)
            except (httpx.HTTPError, LbAdminError):
                continue
    return missed + [a.name for a in pending]
