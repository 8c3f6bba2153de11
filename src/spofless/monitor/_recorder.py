"""The monitor's second loop: the supervisor's state file and the gauges over time.

    Recorder(monitor).run(stop)     until stop: every SUPERVISOR_LOOK the state file
                                    (crash loops), every gauge_interval the gauges
    RecordedCollector(monitor)      the latest gauges, crash loops and etcd quorum
                                    margins on the monitor's /metrics

Each gauge sample reads every load balancer's /metrics (its responses and
latency histogram), the processes of every instance the supervisor of this
machine runs (CPU and memory, see `_procs`), and the replication lag the
PostgreSQL agents told the look loop; `_gauges` turns the counters into gauges,
`_series` stores them. It runs beside the look loop, so a slow /metrics or a
large process tree never delays a look; every read is bounded by probe_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spofless.monitor._crashloop import CrashLoops
from spofless.monitor._gauges import GaugeMeter, LoadCounters, lb_load
from spofless.monitor._probe import Target
from spofless.monitor._procs import Supervised, host_capacity, process_sample, supervised
from spofless.monitor._series import Retention, SeriesStore

if TYPE_CHECKING:
    from spofless.monitor._service import Monitor

logger = logging.getLogger(__name__)

# The state file is looked at this often for restarts (it is rewritten at each change).
SUPERVISOR_LOOK = 1.0
# Supervisor states in which an instance has processes to measure.
RUNNING = frozenset({"starting", "up", "down"})


class Recorder:
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        spec = monitor.s.spec
        self.series = SeriesStore(
            monitor.s.history_path,
            Retention(spec.keep_raw, spec.keep_minutes, spec.keep_hours, spec.keep_days),
        )
        cores, memory = host_capacity()
        self.series.set_meta("cores", cores)
        self.series.set_meta("memory", memory)
        self.series.set_meta("max_lag", float(spec.max_lag))
        self.meter = GaugeMeter()
        self.crash = CrashLoops(monitor.s.me, spec.crash_restarts, spec.crash_window)
        self.lbs: list[Target] = [t for t in monitor.targets if t.how == "lb"]
        self.supervised: dict[str, Supervised] = {}
        self.latest: dict[str, dict[str, float]] = {}
        self.latest_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        next_sample = 0.0
        while not stop.is_set():
            try:
                now = time.time()
                await self.look_at_supervisor(now)
                if now >= next_sample:
                    next_sample = now + self.m.s.spec.gauge_interval
                    await self.sample(now)
            except Exception:
                # Recording is not worth the monitor: logged, tried again next time.
                logger.exception("%s: recording the gauges failed", self.m.s.me)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SUPERVISOR_LOOK):
                    await stop.wait()

    async def look_at_supervisor(self, now: float) -> None:
        state_dir = self.m.s.state_dir
        if state_dir is None:
            return
        self.supervised = await asyncio.to_thread(supervised, state_dir)
        for event in self.crash.observe_all(self.supervised, now):
            self.m._record(event)
        self.m.update_alerts(now)  # a crash loop that started or ended is an alert's change

    async def sample(self, now: float) -> None:
        """One sample of every gauge, stored; rolled up once a minute is over."""
        loads = await asyncio.gather(*(self._load(t) for t in self.lbs))
        by_lb = {t.name: load for t, load in zip(self.lbs, loads, strict=True)}
        roots = {n: s.pids for n, s in self.supervised.items() if s.pids and s.state in RUNNING}
        roots.setdefault(self.m.s.me, (os.getpid(),))  # this monitor measures itself anyway
        procs = await asyncio.to_thread(lambda: {n: process_sample(p) for n, p in roots.items()})
        latest: dict[str, dict[str, float]] = {}
        for name in sorted(set(self.m.state.views) | set(roots) | {self.m.s.me}):
            view = self.m.state.views.get(name)
            lag = None
            if view is not None and view.state == "up" and view.facts.get("role") == "replica":
                raw = view.facts.get("lag")
                lag = float(raw) if isinstance(raw, int | float) else None
            gauges = self.meter.sample(
                name, now, load=by_lb.get(name), process=procs.get(name), lag=lag
            )
            if gauges:
                latest[name] = gauges
        self.meter.forget(set(latest) | set(roots))
        self.latest, self.latest_at = latest, now
        rows = {(n, g): v for n, gs in latest.items() for g, v in gs.items()}
        await asyncio.to_thread(self._store, now, rows)
        self.m.server.publish()

    def _store(self, now: float, rows: dict[tuple[str, str], float]) -> None:
        """In a worker thread: an hour's or a day's roll-up must not stall the looks."""
        self.series.add(now, rows)
        self.series.compact(now)

    async def _load(self, target: Target) -> LoadCounters | None:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        bound = self.m.s.spec.probe_timeout
        try:
            async with asyncio.timeout(bound):
                resp = await self.m.http.get(
                    f"http://{target.ip}:{target.port}/metrics", headers=headers, timeout=bound
                )
                resp.raise_for_status()
                return lb_load(resp.text)
        except (TimeoutError, OSError, ValueError, httpx.HTTPError):
            return None  # down or not answering: its state says so; no load this time

    def close(self) -> None:
        self.series.close()


class RecordedCollector(Collector):
    """The latest gauges, crash loops and etcd quorum margins on /metrics."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["component", "index"]
        families = {
            "cpu": GaugeMetricFamily(
                "spofless_monitor_cpu_cores", "CPU the instance's processes use", labels=labels
            ),
            "memory": GaugeMetricFamily(
                "spofless_monitor_memory_bytes",
                "Memory of the instance's processes (proportional set size)",
                labels=labels,
            ),
            "requests": GaugeMetricFamily(
                "spofless_monitor_requests_per_second",
                "Responses per second of a load balancer",
                labels=labels,
            ),
            "lag": GaugeMetricFamily(
                "spofless_monitor_replication_lag_bytes",
                "Bytes a PostgreSQL replica is behind its primary",
                labels=labels,
            ),
        }
        latency = GaugeMetricFamily(
            "spofless_monitor_latency_seconds",
            "Time to a complete response of a load balancer, over the last sample",
            labels=[*labels, "quantile"],
        )
        r = self.m.recorder
        for name, gauges in r.latest.items():
            comp, _, index = name.rpartition("/")
            for gauge, value in gauges.items():
                if gauge in families:
                    families[gauge].add_metric([comp, index], value)
                elif gauge.startswith("latency_p"):
                    q = "0.5" if gauge == "latency_p50" else "0.99"
                    latency.add_metric([comp, index, q], value)
        yield from families.values()
        yield latency
        restarts = GaugeMetricFamily(
            "spofless_monitor_restarts",
            "Restarts of the instance by its supervisor since `up`",
            labels=labels,
        )
        looping = GaugeMetricFamily(
            "spofless_monitor_crash_loop", "1 while the instance is in a crash loop", labels=labels
        )
        for name, sup in r.supervised.items():
            comp, _, index = name.rpartition("/")
            restarts.add_metric([comp, index], float(sup.restarts))
            looping.add_metric([comp, index], 1.0 if r.crash.looping(name) else 0.0)
        margin = GaugeMetricFamily(
            "spofless_monitor_etcd_quorum_margin",
            "More etcd members the cluster can lose and keep its quorum (below 0: lost)",
            labels=["component"],
        )
        for comp, level in self.m.quorum.levels.items():
            margin.add_metric([comp], float(level.margin))
        yield from (restarts, looping, margin)
