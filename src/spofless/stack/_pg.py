"""PostgreSQL instances as the stack sees them: role and details from the agent's `/status`.

The supervisor asks each agent's API (`GET /status`) once a second and records
what `status` shows: the role, timeline, WAL position and lag, and the `dsn`
a client can use as is. `pid` of a postgres instance is its postmaster's
(read from `postmaster.pid` in its data directory, as PostgreSQL's own tools
do); the supervised process, the agent, is `agent_pid`. `describe` is pure.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

_BUSY_STATES = frozenset({"bootstrapping", "cloning", "rewinding", "re-cloning", "recovering"})
# Asking an agent must never hold up the supervisor's health loop for long.
STATUS_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class PgDetails:
    """What `status` shows of one PostgreSQL instance besides the supervisor's own view."""

    role: str | None  # primary (holds the leader lease), replica, or None
    timeline: int | None
    wal_position: int | None
    lag: int | None  # bytes behind the leader's last published position
    dsn: str | None
    reason: str | None = None  # the agent's sentence when the member is not doing its job

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "timeline": self.timeline,
            "wal_position": self.wal_position,
            "lag": self.lag,
            "dsn": self.dsn,
            "reason": self.reason,
        }


def describe(status: dict[str, Any]) -> PgDetails:
    """The details of a member from its agent's `/status` JSON.

    `primary` only for the writable leader (a primary without the lease is being
    stopped by its agent, so it is shown as `demoting`); `replica` for a streaming
    replica, `replica, not streaming 12s` for one that runs but does not stream;
    `failed` for a member that cannot rejoin by itself (the reason is in `reason`);
    `rewinding`, `cloning`, ... while the agent repairs it.
    """
    from spofless.pg.api import MemberStatus
    from spofless.pg.view import Role

    try:
        m = MemberStatus.from_json(status)
    except ValueError:
        return PgDetails(None, None, None, None, None)
    shown: str | None = None
    if m.running and m.role is Role.PRIMARY:
        shown = "primary" if m.leader else "demoting"
    elif m.running and m.role is Role.REPLICA:
        shown = "replica"
        if not m.streaming:
            secs = m.not_streaming_for
            shown += (
                f", not streaming {secs:.0f}s"
                if isinstance(secs, int | float)
                else (", not streaming")
            )
    if m.state == "failed":
        # Stuck in a state it cannot leave by itself: say so, like a crash loop.
        shown = "failed"
    elif m.state in _BUSY_STATES:
        shown = m.state
    return PgDetails(
        role=shown,
        timeline=_int(m.timeline),
        wal_position=_int(m.wal_position),
        lag=_int(m.lag),
        dsn=m.dsn if isinstance(m.dsn, str) else None,
        reason=m.reason if isinstance(m.reason, str) else None,
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def agent_json(ip: str, api_port: int) -> dict[str, Any] | None:
    """An agent's `/status` JSON (PostgreSQL's or a cache's); None when its API does not
    answer (within STATUS_TIMEOUT) or answers something else than a JSON object."""
    host = f"[{ip}]" if ":" in ip else ip
    try:
        async with httpx.AsyncClient(
            timeout=STATUS_TIMEOUT, verify=_plain_http_context(), trust_env=False
        ) as client:
            resp = await client.get(f"http://{host}:{api_port}/status")
            body = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


async def agent_status(ip: str, api_port: int) -> PgDetails | None:
    """The agent's view of its member; None when its API does not answer."""
    body = await agent_json(ip, api_port)
    return describe(body) if body is not None else None


@functools.cache
def _plain_http_context() -> ssl.SSLContext:
    """One TLS context for every agent request. An agent's API is plain http, so it is
    never used; but httpx builds its default one (loading the CA bundle: tens of ms of
    CPU, near a second on a loaded machine) for each client otherwise, on the
    supervisor's event loop, once per agent per second."""
    return ssl.create_default_context()


def format_lag(lag: int | None) -> str:
    if lag is None:
        return "-"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if lag >= size:
            return f"{lag / size:.1f} {unit}"
    return f"{lag} B"
