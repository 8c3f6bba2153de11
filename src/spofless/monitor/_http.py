"""The monitor's read-only HTTP API and its dashboard.

    GET /          the live dashboard (spofless.dashboard)
    GET /stream    server-sent events: /status's JSON at every change
    GET /graph     the topology as Cytoscape.js elements
    GET /status    JSON: every instance's state, the live analysis, firing alerts, the
                   latest gauges
    GET /gauges    JSON: the raw gauge samples kept (keep_raw), per instance and gauge:
                   what the dashboard's charts start from
    GET /metrics   Prometheus text: the whole system's live state from one endpoint
                   (spofless_monitor_instance_up{component,index,state}, spofless_monitor_live_spof
                   per element, spofless_monitor_margin per entry component, the live
                   availability), so one scrape and one alerting rule
                   (`spofless_monitor_live_spofs > 0`) cover the system; the monitor's
                   own lateness (spofless_monitor_loop_lag_seconds, _starved,
                   _unknown_looks_total: `_starve`); and the gauges, restarts, crash
                   loops, etcd quorum margins (`_recorder`)

One request per connection; the request head is read within READ_TIMEOUT. With
a token (required beyond loopback), every request carries `Authorization: Bearer
<token>` or `?token=<token>` (a browser's EventSource cannot send a header); without
it the answer is 401. Nothing here changes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from spofless import dashboard
from spofless.monitor._recorder import RecordedCollector

if TYPE_CHECKING:
    from spofless.monitor._service import Monitor

logger = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
MAX_HEAD = 8192
HEARTBEAT = 10.0  # a /stream comment this often when nothing changes
MAX_STREAMS = 32  # dashboards open at once


class _LiveCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        m = self.monitor
        up = GaugeMetricFamily(
            "spofless_monitor_instance_up",
            "1 when the instance does its job as this monitor sees it",
            # `index`, not `instance`: Prometheus's own target label is `instance`.
            labels=["component", "index", "state"],
        )
        for name, view in m.state.views.items():
            comp, _, index = name.rpartition("/")
            up.add_metric([comp, index, view.state], 1.0 if view.state == "up" else 0.0)
        yield up
        live = m.live
        spof = GaugeMetricFamily(
            "spofless_monitor_live_spof",
            "1 for each element whose loss alone would now take the system down",
            labels=["element"],
        )
        count = GaugeMetricFamily(
            "spofless_monitor_live_spofs", "How many live single points of failure there are"
        )
        margin = GaugeMetricFamily(
            "spofless_monitor_margin",
            "More element failures it takes to take the entry component down (0: down)",
            labels=["component"],
        )
        baseline = GaugeMetricFamily(
            "spofless_monitor_margin_baseline",
            "The entry component's margin with everything up",
            labels=["component"],
        )
        avail = GaugeMetricFamily(
            "spofless_monitor_availability",
            "Probability the system stays up given what is down now",
        )
        firing = GaugeMetricFamily(
            "spofless_monitor_alerts_firing", "Alerts firing", labels=["severity"]
        )
        if live is not None:
            for element in live.spofs:
                spof.add_metric([element], 1.0)
            count.add_metric([], float(len(live.spofs)))
            for name, mg in live.margins.items():
                margin.add_metric([name], float(mg.failures))
                baseline.add_metric([name], float(m.baseline.margins[name].failures))
            avail.add_metric([], live.availability)
        for severity in ("critical", "error", "warning"):
            n = sum(1 for a in m.alerts.values() if a.severity == severity)
            firing.add_metric([severity], float(n))
        yield from (spof, count, margin, baseline, avail, firing)
        lag = GaugeMetricFamily(
            "spofless_monitor_loop_lag_seconds",
            "How late this monitor's event-loop timer fired (the worst while starved)",
        )
        lag.add_metric([], m.starvation.peak)
        starved = GaugeMetricFamily(
            "spofless_monitor_starved",
            "1 while this monitor is too late to trust its timeouts (they count as unknown)",
        )
        starved.add_metric([], 1.0 if m.starvation.starved else 0.0)
        unknown = CounterMetricFamily(
            "spofless_monitor_unknown_looks",
            "Looks that timed out while this monitor was late: not counted as failures",
        )
        unknown.add_metric([], float(m.doubt.total))
        yield from (lag, starved, unknown)


class StatusServer:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LiveCollector(monitor))
        self.registry.register(RecordedCollector(monitor))
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self.version = 0
        self.streams = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    def publish(self) -> None:
        """Something changed: every open /stream gets the new status."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _authorized(self, head: str, query: str) -> bool:
        token = self.monitor.s.token
        if token is None:
            return True
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization" and hmac.compare_digest(
                value.strip(), f"Bearer {token}"
            ):
                return True
        given = parse_qs(query).get("token", [""])[0]
        return hmac.compare_digest(given, token)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                raw = await reader.readuntil(b"\r\n\r\n")
            head = raw[:MAX_HEAD].decode("latin-1")
            method, target, *_ = head.split(" ", 2)
            path, _, query = target.partition("?")
            if not self._authorized(head, query):
                status, ctype, body = (
                    "401 Unauthorized",
                    "text/plain",
                    b"a bearer token is needed\n",
                )
            elif path == "/stream" and method == "GET":
                await self._stream(writer)
                return
            else:
                status, ctype, body = self.route(method, path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutting down mid-request: the connection just closes (a handler that ends
            # cancelled is logged by asyncio as an error).
            pass
        except asyncio.LimitOverrunError:
            writer.write(b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n")
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        """Server-sent events: the status now, then at every change, a comment every
        HEARTBEAT so that a dead client is noticed; at most MAX_STREAMS at once."""
        if self.streams >= MAX_STREAMS:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            return
        self.streams += 1
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
            while True:
                changed = self._changed
                data = json.dumps(self.monitor.status_json())
                writer.write(f"data: {data}\n\n".encode())
                async with asyncio.timeout(HEARTBEAT):
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT):
                        await changed.wait()
                        continue
                writer.write(b": still here\n\n")
        finally:
            self.streams -= 1

    def route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"read-only: GET or HEAD\n"
        if path == "/status":
            body: Any = self.monitor.status_json()
            return "200 OK", "application/json", json.dumps(body, indent=1).encode()
        if path == "/gauges":
            r = self.monitor.recorder
            since = time.time() - self.monitor.s.spec.keep_raw
            body = {
                "interval": self.monitor.s.spec.gauge_interval,
                "series": r.series.recent(since),
            }
            return "200 OK", "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", generate_latest(self.registry)
        if path == "/":
            return "200 OK", "text/html; charset=utf-8", dashboard.page()
        if path == "/graph":
            elements = dashboard.graph_elements(self.monitor.s.topology)
            return "200 OK", "application/json", json.dumps(elements).encode()
        if path.startswith("/static/"):
            data = dashboard.static_file(path.removeprefix("/static/"))
            if data is not None:
                ctype = {"js": "text/javascript", "css": "text/css"}.get(
                    path.rpartition(".")[2], "text/plain"
                )
                return "200 OK", ctype, data
        return "404 Not Found", "text/plain", f"no such endpoint {path}\n".encode()


def status_document(m: Monitor) -> dict[str, Any]:
    """The monitor's /status: what it sees, the live analysis, alerts, latest events."""
    live = m.live
    return {
        "monitor": m.s.me,
        "topology": m.s.topology.name,
        "complete": m.state.complete,
        "last_look": m.last_look,
        # Its own lateness: while starved, looks that time out are unknown (`_starve`).
        "starved": m.starvation.starved,
        "loop_lag": round(m.starvation.peak, 3),
        "unknown_looks": m.doubt.total,
        "instances": {
            **{n: v.to_json() for n, v in m.state.views.items()},
            m.s.me: {"state": "up", "detail": "this monitor", "since": 0.0},
        },
        "down": sorted(live.down) if live else [],
        "availability": live.availability if live else None,
        "live_spofs": list(live.spofs) if live else [],
        "margins": {
            n: {
                "failures": margin.failures,
                "at_least": margin.at_least,
                "baseline": m.baseline.margins[n].failures,
            }
            for n, margin in (live.margins.items() if live else ())
        },
        "alerts": [
            {"key": a.key, "severity": a.severity, "summary": a.summary} for a in m.alerts.values()
        ],
        "vip_holders": m.vip_holders,
        "gauges": m.recorder.latest,
        "gauges_at": m.recorder.latest_at,
        "events": [e.to_json() for e in m.recent],
    }
