"""Protections under real sockets: slowloris clients and the per-backend connection limit."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from lb_fixtures import get, processes, start_backend, start_lb

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 300
HEADER_TIMEOUT = 2.0


async def _slowloris(port: int, started: float) -> tuple[float, bytes]:
    """Send a request head one byte a second; seconds until the LB closed us, and its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    answer = b""
    try:
        for _ in range(30):  # bounded: 30 bytes, 30 s at most
            try:
                answer += await asyncio.wait_for(reader.read(1024), 1.0)
                if reader.at_eof():
                    break
            except TimeoutError:
                writer.write(b"X")
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


def test_slowloris_clients_are_cut_off_while_others_are_served(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, _ = start_lb(
            procs, ports, "--set", f"header_timeout={HEADER_TIMEOUT}", log=tmp_path / "lb.log"
        )
        assert get(lb)[0] == 200
        normal: list[tuple[int, float]] = []
        stop = threading.Event()

        def normal_client() -> None:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                t0 = time.monotonic()
                code = get(lb, timeout=5)[0]
                normal.append((code, time.monotonic() - t0))
                time.sleep(0.01)

        client = threading.Thread(target=normal_client, daemon=True)

        async def slow_all() -> list[tuple[float, bytes]]:
            started = time.monotonic()
            tasks = [_slowloris(lb, started) for _ in range(SLOW_CLIENTS)]
            return await asyncio.gather(*tasks)

        client.start()
        try:
            slow = asyncio.run(slow_all())
        finally:
            stop.set()
            client.join(10)
    held = max(seconds for seconds, _ in slow)
    answered = sum(1 for _, answer in slow if answer.startswith(b"HTTP/1.1 408"))
    assert held < HEADER_TIMEOUT + 1.5, held  # header timeout plus the 0.1 s sweep, generous
    assert answered == SLOW_CLIENTS
    assert len(normal) > 20
    assert all(code == 200 for code, _ in normal), normal
    assert max(latency for _, latency in normal) < 0.5  # a hang, not a benchmark


def test_connection_limit_queues_then_answers_503(tmp_path: Path) -> None:
    with processes() as procs:
        port = start_backend(procs, "b0")
        lb, _ = start_lb(
            procs,
            [port],
            "--set",
            "max_conns_per_backend=1",
            "--set",
            "queue_timeout=0.5",
            log=tmp_path / "lb.log",
        )
        results: dict[str, tuple[int, dict[str, str], float]] = {}

        def call(name: str, path: str) -> None:
            t0 = time.monotonic()
            code, _, headers = get(lb, path)
            results[name] = (code, headers, time.monotonic() - t0)

        # The slot is busy for 1.5 s: a queued request gives up after 0.5 s.
        holder = threading.Thread(target=call, args=("holder", "/slow/1.5"))
        holder.start()
        time.sleep(0.3)
        call("queued-too-long", "/")
        holder.join(10)
        # The slot is busy for 0.3 s: the queued request is served when it frees.
        holder = threading.Thread(target=call, args=("short", "/slow/0.3"))
        holder.start()
        time.sleep(0.1)
        call("queued", "/")
        holder.join(10)
    code, headers, waited = results["queued-too-long"]
    assert code == 503 and headers.get("retry-after") == "1"
    assert 0.4 < waited < 1.2
    assert results["holder"][0] == 200
    code, _, waited = results["queued"][:3]
    assert code == 200 and 0.1 < waited < 1.0
    assert results["short"][0] == 200
