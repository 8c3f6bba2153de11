"""Health-checked authoritative DNS: answers with the healthy instances of a component.

    dns_settings(topology, component, index) -> DnsSettings   validated, from the topology
    Zone(settings)                                            settings prepared for answering
    answer_wire(wire, source, view, zone) -> bytes | None     the pure answer (see _answer)
    AnswerCache(zone)                                         its memo for one health view
    ResponseRateLimiter(spec)                                 per-netblock token bucket + slip
    DnsServer(settings)                                       UDP + TCP listeners, health checks
    run(settings)                                             serve until SIGTERM or SIGINT

Errors: a topology this server cannot run from raises `spofless.topology.CannotRunError` from
`dns_settings`; nothing a client sends raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import uvloop

from spofless.dns._answer import (
    HealthView,
    Zone,
    answer_wire,
    client_region,
    respond,
    select_members,
    udp_limit,
)
from spofless.dns._cache import AnswerCache
from spofless.dns._ratelimit import ResponseRateLimiter, Verdict
from spofless.dns._server import DnsServer, serve
from spofless.dns._settings import DnsSettings, Member, NameServer, Pool, dns_settings

__all__ = [
    "AnswerCache",
    "DnsServer",
    "DnsSettings",
    "HealthView",
    "Member",
    "NameServer",
    "Pool",
    "ResponseRateLimiter",
    "Verdict",
    "Zone",
    "answer_wire",
    "client_region",
    "dns_settings",
    "respond",
    "run",
    "select_members",
    "serve",
    "udp_limit",
]


def run(settings: DnsSettings) -> None:
    """Serve `settings` in this process until SIGTERM or SIGINT (on uvloop)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
