"""The monitor's read-only HTTP API.

    GET /status    JSON: every instance's state, the live analysis, firing alerts
    GET /metrics   Prometheus text: the whole system's live state from one endpoint
                   (spofless_monitor_instance_up per instance, spofless_monitor_live_spof
                   per element, spofless_monitor_margin per entry component, the live
                   availability), so one scrape and one alerting rule
                   (`spofless_monitor_live_spofs > 0`) cover the system

One request per connection; the request head is read within READ_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from spofless.monitor._service import Monitor

logger = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
MAX_HEAD = 8192


class _LiveCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.monitor
        up = GaugeMetricFamily(
            "spofless_monitor_instance_up",
            "1 when the instance does its job as this monitor sees it",
            labels=["component", "instance", "state"],
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


class StatusServer:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LiveCollector(monitor))
        self._server: asyncio.Server | None = None

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target, *_ = head[:MAX_HEAD].decode("latin-1").split(" ", 2)
            status, ctype, body = self.route(method, target.split("?", 1)[0])
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

    def route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"read-only: GET or HEAD\n"
        if path in ("/status", "/"):
            body: Any = self.monitor.status_json()
            return "200 OK", "application/json", json.dumps(body, indent=1).encode()
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", generate_latest(self.registry)
        return "404 Not Found", "text/plain", f"no such endpoint {path}\n".encode()
