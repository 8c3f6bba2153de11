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
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from spofless.stack._errors import StackError
from spofless.topology import LoadBalancerComponent, Topology

__all__ = ["Drain", "LbAdmin", "LbAdminError", "admins_routing_to", "drain", "enable", "errors_of"]

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
