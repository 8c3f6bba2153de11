"""The agent's HTTP API over a real socket: answers, bad requests, still alive after them."""

from __future__ import annotations

import asyncio
import json

import pytest

from spofless.pg import Role
from spofless.pg.api import ApiServer, ApiSnapshot, MemberStatus

pytestmark = pytest.mark.integration

LEADER = MemberStatus("a", running=True, role=Role.PRIMARY, leader=True, timeline=2)


async def _request(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.split(b"\r\n\r\n", 1)[-1]


async def test_real_socket() -> None:
    current = ApiSnapshot(me=LEADER, members=(LEADER,), leader="a")
    server = ApiServer("a", lambda: current)
    await server.start("127.0.0.1", 0)
    try:
        status, body = await _request(server.port, b"GET /primary HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and json.loads(body)["name"] == "a"
        status, body = await _request(server.port, b"HEAD /replica HTTP/1.1\r\n\r\n")
        assert status == 503 and body == b""
        status, _ = await _request(server.port, b"garbage\r\n\r\n")
        assert status == 400
        status, _ = await _request(server.port, b"GET /" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n")
        assert status == 400
        # The server is still answering after the bad requests.
        status, _ = await _request(server.port, b"GET /health HTTP/1.1\r\n\r\n")
        assert status == 200
    finally:
        await server.close()
