"""Active checks against real sockets on 127.0.0.1, and the monitor's loop."""

from __future__ import annotations

import asyncio
import socket

import pytest
from free_ports import free_port as _free_port

from spofless.health import HealthMonitor, Status, Target, Transition, run_check
from spofless.topology import HealthCheck

pytestmark = pytest.mark.integration


async def _http_server(status: int, body: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_tcp_check_up_and_refused() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok = await run_check(HealthCheck(type="tcp"), "127.0.0.1", port)
        assert ok.ok
    refused = await run_check(HealthCheck(type="tcp"), "127.0.0.1", _free_port())
    assert not refused.ok and refused.definite and refused.detail == "connection refused"


async def test_http_check_status_and_body() -> None:
    server, port = await _http_server(200, b"ready")
    async with server:
        assert (await run_check(HealthCheck(type="http"), "127.0.0.1", port)).ok
        spec = HealthCheck(type="http", expect_body="nope")
        bad = await run_check(spec, "127.0.0.1", port)
        assert not bad.ok and "body" in bad.detail
    server, port = await _http_server(503, b"")
    async with server:
        bad = await run_check(HealthCheck(type="http"), "127.0.0.1", port)
        assert not bad.ok and bad.detail == "status 503" and not bad.definite


async def test_silent_target_times_out() -> None:
    # A listening socket that never accepts: connect succeeds via the backlog, nothing answers.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        spec = HealthCheck(type="http", timeout=0.2)
        result = await run_check(spec, "127.0.0.1", port)
    assert not result.ok and "timeout" in result.detail and not result.definite
    assert result.duration < 2.0


async def test_command_check() -> None:
    assert (await run_check(HealthCheck(type="command", command="true"), "h", 1)).ok
    spec = HealthCheck(type="command", command="test {port} = 7")
    assert (await run_check(spec, "h", 7)).ok
    assert not (await run_check(spec, "h", 8)).ok


async def test_monitor_marks_a_stopped_server_down_and_back_up() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    changes: asyncio.Queue[Transition] = asyncio.Queue()
    spec = HealthCheck(type="tcp", interval=0.05, timeout=0.2, rise=2)
    target = Target("b0", "127.0.0.1", port)
    monitor = HealthMonitor([target], spec, lambda n, t: changes.put_nowait(t))
    monitor.start()
    seen = []
    try:
        async with asyncio.timeout(5):
            seen.append((await changes.get()).new)
            server.close()
            await server.wait_closed()
            seen.append((await changes.get()).new)
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
            seen.append((await changes.get()).new)
    finally:
        await monitor.stop()
        server.close()
    assert seen == [Status.UP, Status.DOWN, Status.UP]
    assert monitor.health("b0").last_result is not None


async def test_passive_observation_feeds_the_detector() -> None:
    monitor = HealthMonitor([Target("b0", "127.0.0.1", 1)], HealthCheck(), initial=Status.UP)
    t = monitor.observe("b0", False, definite=True, detail="connection refused")
    assert t is not None and monitor.view() == {"b0": Status.DOWN}


async def test_tcp_send_expect_check() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"+PONG\r\n" if line == b"PING\r\n" else b"-ERR\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ping = HealthCheck(type="tcp", send="PING\r\n", expect="+PONG")
        assert (await run_check(ping, "127.0.0.1", port)).ok
        wrong = HealthCheck(type="tcp", send="HELLO\r\n", expect="+PONG")
        bad = await run_check(wrong, "127.0.0.1", port)
        assert not bad.ok and "+PONG" in bad.detail
    # Accepted by the kernel, never answered (a frozen process): a connect would pass.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        assert (await run_check(HealthCheck(type="tcp"), "127.0.0.1", port)).ok
        silent = HealthCheck(type="tcp", send="PING\r\n", expect="+PONG", timeout=0.2)
        result = await run_check(silent, "127.0.0.1", port)
    assert not result.ok and "timeout" in result.detail


def test_send_and_expect_belong_to_tcp_checks() -> None:
    with pytest.raises(ValueError, match="type tcp"):
        HealthCheck(type="http", expect="x")
    with pytest.raises(ValueError, match="needs `expect`"):
        HealthCheck(type="tcp", send="x")
