"""The gauges the monitor records per instance, from counters it reads. Pure.

    GAUGES                                   name -> what it is, its unit
    lb_load(metrics_text) -> LoadCounters    a load balancer's /metrics, summed over backends
    GaugeMeter().sample(name, now, load=, process=, lag=) -> {gauge: value}
    histogram_quantile(q, bounds, counts) -> float | None

    cpu          cores the instance's processes used (1.0: one core busy), from /proc
    memory       bytes: the proportional set size of its processes (shared pages split,
                 so PostgreSQL's shared buffers count once), from /proc
    requests     responses per second a load balancer gave (every backend)
    latency_p50  seconds to a complete response, median, over the sampling interval
    latency_p99  the same, 99th percentile (from the load balancer's histogram, as
                 Prometheus's histogram_quantile interpolates it)
    lag          bytes a PostgreSQL replica is behind its primary (its agent's /status)

Rates come from the difference of two readings of a counter: the first reading
of an instance gives none, and a counter that went back (the part restarted)
gives none for that interval rather than a negative rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

GAUGES: dict[str, tuple[str, str]] = {
    "cpu": ("cores", "CPU used by the instance's processes"),
    "memory": ("bytes", "memory of the instance's processes (proportional set size)"),
    "requests": ("1/s", "responses per second of a load balancer"),
    "latency_p50": ("seconds", "median time to a complete response"),
    "latency_p99": ("seconds", "99th percentile of the time to a complete response"),
    "lag": ("bytes", "replication lag of a PostgreSQL replica"),
}


@dataclass(frozen=True, slots=True)
class LoadCounters:
    """A load balancer's counters, summed over its backends."""

    responses: float
    bounds: tuple[float, ...]  # the histogram's finite upper bounds, ascending
    buckets: tuple[float, ...]  # per bucket (not cumulative), the last one above every bound


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """An instance's processes, read at one time."""

    cpu_seconds: float  # user + system, its processes and the children they reaped
    memory: float  # bytes


def lb_load(text: str) -> LoadCounters:
    """Sum `spofless_lb_responses` and the `spofless_lb_request_duration_seconds`
    histogram over every backend; ValueError when the text is not Prometheus's."""
    responses = 0.0
    cumulative: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:  # by sample name: the family's depends on the TYPE line
            if s.name == "spofless_lb_responses_total":
                responses += s.value
            elif s.name == "spofless_lb_request_duration_seconds_bucket":
                le = float(s.labels["le"])
                cumulative[le] = cumulative.get(le, 0.0) + s.value
    ordered = sorted(cumulative.items())
    bounds = tuple(le for le, _ in ordered if not math.isinf(le))
    buckets, below = [], 0.0
    for _, count in ordered:
        buckets.append(count - below)
        below = count
    if len(buckets) == len(bounds):  # no +Inf bucket: none above the last bound
        buckets.append(0.0)
    return LoadCounters(responses, bounds, tuple(buckets))


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The q-quantile of observations in buckets (counts per bucket, the last one above
    every bound), interpolated linearly within its bucket; None with no observation.
    One that falls above the last bound is the last bound (nothing better is known)."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0.0
    for i, n in enumerate(counts):
        if below + n >= rank and n > 0:
            if i >= len(bounds):
                return bounds[-1] if bounds else None
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - below) / n
        below += n
    return bounds[-1] if bounds else None


@dataclass(frozen=True, slots=True)
class _Reading:
    at: float
    load: LoadCounters | None
    cpu_seconds: float | None


class GaugeMeter:
    """Turns counters read at intervals into the gauges of each instance."""

    def __init__(self) -> None:
        self._last: dict[str, _Reading] = {}

    def sample(
        self,
        name: str,
        now: float,
        *,
        load: LoadCounters | None = None,
        process: ProcessSample | None = None,
        lag: float | None = None,
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        before = self._last.get(name)
        cpu = process.cpu_seconds if process is not None else None
        self._last[name] = _Reading(now, load, cpu)
        if process is not None:
            out["memory"] = process.memory
        if lag is not None:
            out["lag"] = float(lag)
        if before is None or now <= before.at:
            return out
        dt = now - before.at
        if cpu is not None and before.cpu_seconds is not None and cpu >= before.cpu_seconds:
            out["cpu"] = (cpu - before.cpu_seconds) / dt
        old = before.load
        if load is not None and old is not None and load.responses >= old.responses:
            out["requests"] = (load.responses - old.responses) / dt
            if load.bounds == old.bounds and len(load.buckets) == len(old.buckets):
                delta = [a - b for a, b in zip(load.buckets, old.buckets, strict=True)]
                if min(delta, default=0.0) >= 0:
                    for gauge, q in (("latency_p50", 0.5), ("latency_p99", 0.99)):
                        value = histogram_quantile(q, load.bounds, delta)
                        if value is not None:
                            out[gauge] = value
        return out

    def forget(self, keep: set[str]) -> None:
        for name in [n for n in self._last if n not in keep]:
            del self._last[name]
