"""The monitor's dashboard over real sockets: the page and its vendored library, the graph,
the server-sent stream that follows an instance going down, and the token rule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
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
security: {{tls: false}}  # a topology from text: no secrets; its etcd is plain
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
            # The charts' library and what they start from: this monitor measures itself.
            css = await client.get(f"{base}/static/uplot.min.css")
            assert css.headers["content-type"] == "text/css" and b".uplot" in css.content
            assert (await client.get(f"{base}/static/uplot.iife.min.js")).status_code == 200
            gauges = (await client.get(f"{base}/gauges")).json()
            assert gauges["series"]["monitor/0"]["memory"][0][1] > 1 << 20
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


class Browser:
    """Headless Chromium driven over the DevTools protocol (no driver binary needed)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mine = self.next_id
        await self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]  # type: ignore[no-any-return]

    async def value(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, what: str, expression: str, bound: float = 20.0) -> Any:
        async with asyncio.timeout(bound):
            while not (value := await self.value(expression)):  # noqa: ASYNC110 (polls the page)
                await asyncio.sleep(0.1)
        return value


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Browser]:
    import shutil

    import websockets

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--headless=new",
        "--no-sandbox",  # as root
        "--disable-gpu",
        "--no-first-run",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or not port_file.read_text().strip():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            pages = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        async with websockets.connect(url, max_size=50 * 1024 * 1024) as ws:
            yield Browser(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        async with asyncio.timeout(10):
            await proc.wait()


GREEN, RED = "rgb(45,164,78)", "rgb(207,34,46)"
COLOUR = "cy.getElementById('instance:web/0').style('background-color').replace(/ /g, '')"


async def test_in_a_real_browser_the_node_turns_red_without_a_reload(tmp_path: Path) -> None:
    shots = os.environ.get("SPOFLESS_SCREENSHOT")  # docs/monitor-dashboard.png is this shot
    extra = "    gauge_interval: 1" if shots else ""  # charts with a few points to show
    async with (
        running(tmp_path, extra) as (monitor, listeners),
        chromium(tmp_path / "profile") as b,
    ):
        await b.call("Page.enable")
        await b.call("Page.navigate", url=f"http://127.0.0.1:{monitor.server.port}/")
        await b.until("the graph", "typeof cy !== 'undefined' && cy !== null && cy.nodes().length")
        await b.until("web/0 green", f"{COLOUR} === '{GREEN}'")
        await b.call("Runtime.evaluate", expression="window.__same_page = true")
        listeners[0].close()
        await b.until("web/0 red", f"{COLOUR} === '{RED}'")
        await b.until(
            "the event listed",
            "document.getElementById('events').textContent.includes('web/0 is down')",
        )
        assert await b.value("window.__same_page === true")  # no reload happened
        assert await b.value("cy.getElementById('instance:web/1').hasClass('spof')")
        # A VIP holder is marked, per region with per-region addresses (the slots as
        # /status gives them; the monitor's own VIP read is unit-tested).
        monitor.vip_holders = {"lb[r1]": "web/1", "lb[r2]": None}
        monitor.server.publish()
        await b.until(
            "web/1 marked as r1's VIP holder",
            "cy.getElementById('instance:web/1').data('label').endsWith('◆VIP r1')",
        )
        # A chart per component and gauge, drawn by the vendored uPlot.
        await b.until(
            "the monitor's memory chart",
            "document.querySelector('[data-chart=\"monitor|memory\"] canvas') !== null",
        )
        if shots:
            await b.until("a dozen samples charted", "samples.size >= 12", bound=60)
        # The whole page, charts below the graph included.
        size = (await b.call("Page.getLayoutMetrics"))["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await b.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        import base64

        out = Path(shots or tmp_path / "dashboard.png")
        await asyncio.to_thread(out.write_bytes, base64.b64decode(shot["data"]))
