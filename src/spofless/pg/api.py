"""The agent's HTTP API: health endpoints for load balancers, JSON for humans and peers.

    GET /primary            200 only on the writable leader (primary holding the lease)
    GET /replica[?lag=N]    200 on a streaming replica, lagging at most N bytes (N may be
                            written 10MB, 512kB, ...)
    GET /health             200 when the member does its job: the primary holding the
                            lease, or a replica streaming from the leader (a replica
                            that runs but does not stream is not healthy)
    GET /cluster            200, JSON of every member: role, state, timeline, lag
    GET /status             200, JSON of this member (peers poll it during an election)
    GET /metrics            200, Prometheus text: role, lease, timeline, WAL, lag, and
                            spofless_pg_synchronous_degraded (1 while synchronous mode has
                            fallen back to asynchronous: alert on it), spofless_pg_healthy,
                            spofless_pg_not_streaming_seconds, spofless_pg_failed; with
                            backups, the component's newest restore drill
                            (spofless_backup_restore_drill_failed, _rto_seconds,
                            _phase_seconds, _rpo_seconds, _last_success_timestamp_seconds)

HEAD works on all of them. A check endpoint's body is this member's JSON either
way, so a human sees why. `route` is a pure function of the request and the
agent's latest snapshot; `ApiServer` is the small asyncio socket around it
(one request per connection, every read bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from spofless.pg.view import Role

logger = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 8192
READ_TIMEOUT = 5.0  # a slow or silent client cannot hold a connection longer
_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """What one member publishes about itself (in etcd and at /status)."""

    name: str
    running: bool = False
    role: Role | None = None
    leader: bool = False  # holds the leader lease
    timeline: int | None = None
    wal_position: int | None = None
    lag: int | None = None  # bytes behind the leader's last published position
    streaming: bool = False
    state: str = "stopped"  # the agent's one-word state: running, starting, stopped, ...
    api_url: str | None = None
    dsn: str | None = None
    host: str | None = None  # where its PostgreSQL listens: to clone, follow, rewind from
    port: int | None = None
    # Why it is not doing its job (not streaming, failed, rejoining), or None.
    reason: str | None = None
    not_streaming_for: float | None = None  # seconds a running replica has not streamed

    @property
    def healthy(self) -> bool:
        """Doing its job: the writable leader, or a replica streaming from it."""
        if not self.running or self.state == "failed":
            return False
        if self.role is Role.PRIMARY:
            return self.leader
        return self.role is Role.REPLICA and self.streaming

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Role) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MemberStatus:
        """The status a member published (its etcd key, its /status, a /cluster entry).

        Unknown keys are ignored (a newer agent may publish more); ValueError when a
        known one is unusable (no name, an unknown role, a field of the wrong type)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise ValueError("a member status is a JSON object with a name")
        known = {k: v for k, v in d.items() if k in _FIELDS}
        role = known.get("role")
        known["role"] = Role(role) if role else None
        try:
            return cls(**known)
        except TypeError as exc:
            raise ValueError(f"member {d['name']}: {exc}") from None


_FIELDS = frozenset(MemberStatus.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class ApiSnapshot:
    """The agent's latest view, as the API serves it."""

    me: MemberStatus
    members: tuple[MemberStatus, ...] = ()  # every member, me included
    leader: str | None = None
    paused: bool = False
    synchronous: frozenset[str] = field(default_factory=frozenset)
    # Synchronous mode is on but no replica is synchronous: commits are not waiting for one.
    degraded: bool = False
    # WAL of degraded terms that the members promoted after them did not hold.
    possibly_lost: tuple[str, ...] = ()
    # The component's newest restore drill (spofless.pg.drill_records.drill_summary), and its
    # Prometheus lines (spofless.pg.drill_records.drill_metrics); None, () without backups.
    restore_drill: Mapping[str, Any] | None = None
    drill_metrics: tuple[str, ...] = ()

    def cluster_json(self) -> dict[str, Any]:
        return {
            "leader": self.leader,
            "paused": self.paused,
            "degraded": self.degraded,
            "synchronous": sorted(self.synchronous),
            "possibly_lost": list(self.possibly_lost),
            "members": [m.to_json() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Mapping[str, Any] | str  # JSON, or text (Prometheus exposition format)


def parse_bytes(text: str) -> int:
    """`1048576`, `10MB`, `512kB` as bytes; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?[bB]?)\s*", text)
    if not m:
        raise ValueError(f"not a byte count: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def route(method: str, target: str, snap: ApiSnapshot) -> Response:
    """The response to one request, from the snapshot alone."""
    if method not in ("GET", "HEAD"):
        return Response(405, {"error": f"method {method} not allowed"})
    url = urlsplit(target)
    me = snap.me
    body = me.to_json()
    if url.path == "/primary":
        ok = me.running and me.role is Role.PRIMARY and me.leader
        return Response(200 if ok else 503, body)
    if url.path == "/replica":
        query = parse_qs(url.query)
        limit: int | None = None
        if "lag" in query:
            try:
                limit = parse_bytes(query["lag"][0])
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
        ok = me.running and me.role is Role.REPLICA and me.streaming
        if ok and limit is not None:
            ok = me.lag is not None and me.lag <= limit
        return Response(200 if ok else 503, body)
    if url.path == "/health":
        return Response(200 if me.healthy else 503, body)
    if url.path == "/cluster":
        return Response(200, snap.cluster_json())
    if url.path in ("/status", "/"):
        return Response(
            200, {**body, "degraded": snap.degraded, "restore_drill": snap.restore_drill}
        )
    if url.path == "/metrics":
        return Response(200, metrics_text(snap))
    return Response(404, {"error": f"no such endpoint {url.path}"})


def metrics_text(snap: ApiSnapshot) -> str:
    """This member's state in the Prometheus text format (version 0.0.4)."""
    me = snap.me
    gauges = [
        ("spofless_pg_up", "PostgreSQL is running", int(me.running)),
        ("spofless_pg_primary", "running as the writable primary", int(me.role is Role.PRIMARY)),
        ("spofless_pg_leader", "holds the leader lease", int(me.leader)),
        ("spofless_pg_timeline", "current timeline", me.timeline),
        ("spofless_pg_wal_position_bytes", "WAL position", me.wal_position),
        ("spofless_pg_replication_lag_bytes", "bytes behind the leader", me.lag),
        ("spofless_pg_streaming", "a replica streaming from the leader", int(me.streaming)),
        (
            "spofless_pg_not_streaming_seconds",
            "a running replica not streaming",
            me.not_streaming_for,
        ),
        ("spofless_pg_healthy", "doing its job (leader, or streaming replica)", int(me.healthy)),
        ("spofless_pg_failed", "stuck: cannot rejoin by itself", int(me.state == "failed")),
        ("spofless_pg_synchronous_degraded", "synchronous mode fell back to async", snap.degraded),
        ("spofless_pg_failover_paused", "automatic failover paused", int(snap.paused)),
    ]
    out = []
    for name, help_text, value in gauges:
        if value is None:
            continue
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        out.append(f'{name}{{member="{me.name}"}} {int(value)}')
    return "\n".join([*out, *snap.drill_metrics]) + "\n"


def render(resp: Response, head_only: bool) -> bytes:
    if isinstance(resp.body, str):
        payload, ctype = resp.body.encode(), "text/plain; version=0.0.4"
    else:
        payload = json.dumps(resp.body, separators=(",", ":")).encode() + b"\n"
        ctype = "application/json"
    head = (
        f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Error')}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + payload


class ApiServer:
    """Serves `route` over HTTP/1.1 on host:port; `snapshot` is called per request."""

    def __init__(self, name: str, snapshot: Callable[[], ApiSnapshot]) -> None:
        self.name = name
        self._snapshot = snapshot
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, limit=MAX_REQUEST_HEAD
        )
        logger.info("%s: API listening on %s:%d", self.name, host, port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(render(Response(400, {"error": "request head too large"}), False))
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                writer.write(render(Response(400, {"error": "malformed request line"}), False))
                return
            method, target = parts[0], parts[1]
            writer.write(render(route(method, target, self._snapshot()), method == "HEAD"))
            async with asyncio.timeout(READ_TIMEOUT):
                await writer.drain()
        except Exception:  # a broken client must never take the API down
            logger.exception("%s: API request failed", self.name)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
