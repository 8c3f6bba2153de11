"""The monitor's dashboard over real sockets: the page and its vendored library, the graph,
the server-sent stream that follows an instance going down, and the token rule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from free_ports import port_block

from spofless.dcs import MemoryStore
from spofless.errors import SpoflessError
from spofless.monitor import Monitor, monitor_settings
from spofless.topology import load_topology_text

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: dash
hosts:
  h1: {{}}
  h2: {{}}
components:
  web: {{kind: service, instances: [h1, h2], port: {web}}}
  etcd: {{kind: etcd, instances: [h1], port: {etcd}, peer_port: {peer}}}
  monitor:
    kind: monitor
    instances: [h1, h2]
    port: {monitor}
{extra}
entry: [web]
"""


class Listener:
    """A TCP server standing in for a service instance; `close()` makes it refuse."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()


@contextlib.asynccontextmanager
async def running(tmp_path: Path, extra: str = "") -> AsyncIterator[tuple[Monitor, list[Listener]]]:
    ports = {k: port_block(2) for k in ("web", "etcd", "peer", "monitor")}
    topology = load_topology_text(TOPOLOGY.format(extra=extra, **ports))
    listeners = [Listener(ports["web"] + i) for i in range(2)]
    monitor = Monitor(monitor_settings(topology, "monitor", 0, tmp_path), store=MemoryStore())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        async with asyncio.timeout(10):
            while not monitor.state.complete:  # noqa: ASYNC110 (polled: no event to wait on)
                await asyncio.sleep(0.05)
        yield monitor, listeners
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
        for listener in listeners:
            listener.close()


async def events(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
    async with (
        httpx.AsyncClient(timeout=10, trust_env=False) as client,
        client.stream("GET", url, headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))


async def test_the_page_and_its_live_stream(tmp_path: Path) -> None:
    async with running(tmp_path) as (monitor, listeners):
        base = f"http://127.0.0.1:{monitor.server.port}"
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            page = await client.get(f"{base}/")
            assert page.status_code == 200 and "static/cytoscape.min.js" in page.text
            lib = await client.get(f"{base}/static/cytoscape.min.js")
            assert lib.status_code == 200 and len(lib.content) > 100_000
            assert (await client.get(f"{base}/static/../../etc/passwd")).status_code == 404
            graph = (await client.get(f"{base}/graph")).json()
            ids = {e["data"]["id"]: e["data"] for e in graph}
            assert ids["instance:web/1"]["parent"] == "host:h2"
            assert (await client.post(f"{base}/status")).status_code == 405
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            async for status in events(f"{base}/stream"):
                seen.append(status)
                if len(seen) == 1:
                    assert status["instances"]["web/0"]["state"] == "up"
                    listeners[0].close()  # web/0 stops: the page learns it without asking
                if status["instances"]["web/0"]["state"] == "down" and status["alerts"]:
                    break
        last = seen[-1]
        assert "instance:web/1" in last["live_spofs"]
        assert last["alerts"][0]["summary"].startswith("web/0 is down")
        assert any("web/0 is down" in e["message"] for e in last["events"])


async def test_beyond_loopback_needs_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = TOPOLOGY.format(web=1, etcd=3, peer=5, monitor=7, extra="").replace(
        "  h1: {}", "  h1: {address: 10.9.9.9}"
    )
    with pytest.raises(SpoflessError, match="beyond loopback: give its API a bearer token"):
        monitor_settings(load_topology_text(text), "monitor", 0, tmp_path)

    monkeypatch.setenv("DASH_TOKEN_FOR_TEST", "t0ken")
    async with running(tmp_path, "    token_env: DASH_TOKEN_FOR_TEST") as (monitor, _):
        base = f"http://127.0.0.1:{monitor.server.port}"
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            assert (await client.get(f"{base}/status")).status_code == 401
            assert (await client.get(f"{base}/status?token=wrong")).status_code == 401
            ok = await client.get(f"{base}/status", headers={"Authorization": "Bearer t0ken"})
            assert ok.status_code == 200
            assert (await client.get(f"{base}/metrics?token=t0ken")).status_code == 200
