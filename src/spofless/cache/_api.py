"""The cache agent's HTTP API, read by load balancers in mode redis and by `status`.

    GET /primary   200 only on the shard's writable primary (holds the lease, not fenced)
    GET /replica   200 on a replica whose link to its primary is up
    GET /health    200 while the member does its job: the writable primary, or a replica
                   whose link to its primary is up (a fenced primary, a replica cut off
                   from its primary or a Redis that does not answer is not healthy)
    GET /status    200, JSON of this member

One request per connection, every read bounded; `route` is pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
MAX_HEAD = 8192


@dataclass(frozen=True, slots=True)
class Snapshot:
    """This member as the API shows it."""

    name: str
    role: str | None  # primary | replica | None (Redis does not answer)
    leader: bool  # holds the shard's lease
    fenced: bool
    link_up: bool
    offset: int
    address: str
    leader_name: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "leader": self.leader,
            "fenced": self.fenced,
            "link_up": self.link_up,
            "offset": self.offset,
            "address": self.address,
            "leader_name": self.leader_name,
            "running": self.role is not None,
        }


def route(path: str, snap: Snapshot) -> int:
    """The status code of GET `path` (the body is always the member's JSON)."""
    path = path.split("?", 1)[0]
    if path == "/primary":
        return 200 if snap.role == "primary" and snap.leader and not snap.fenced else 503
    if path == "/replica":
        return 200 if snap.role == "replica" and snap.link_up else 503
    if path == "/health":
        return 200 if route("/primary", snap) == 200 or route("/replica", snap) == 200 else 503
    if path == "/status":
        return 200
    return 404


class ApiServer:
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head[:MAX_HEAD].split(b"\r\n", 1)[0].split()
            method = parts[0] if parts else b""
            path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
            snap = self._snapshot()
            code = route(path, snap) if method in (b"GET", b"HEAD") else 405
            body = json.dumps(snap.to_json()).encode()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                code, "Service Unavailable"
            )
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == b"HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
