"""One backend as a worker sees it: health view, admin state, pool, counters.

Plain mutable state touched on the hot path: attributes, no properties that
compute, no locks (one event loop per worker).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from spofless.lb._settings import BackendSpec

if TYPE_CHECKING:
    from spofless.lb._upstream import UpstreamConn

# Latency histogram upper bounds in seconds (Prometheus-style cumulative on export).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Backend:
    """A backend's state in one worker."""

    __slots__ = (
        "active",
        "admin",
        "base_weight",
        "buckets",
        "connect_failures",
        "consecutive_failures",
        "ejected",
        "host",
        "idle",
        "inflight",
        "latency_sum",
        "name",
        "need_up",
        "port",
        "requests",
        "responses",
        "retries",
        "since",
        "spliced",
        "status",
        "up_since",
        "weight",
    )

    def __init__(self, spec: BackendSpec) -> None:
        self.name = spec.name
        self.host = spec.host
        self.port = spec.port
        self.base_weight = float(spec.weight)
        self.weight = float(spec.weight)  # effective: 0 when not eligible, slow start applied
        self.status = "unknown"  # up | down | unknown, from the health view
        self.since = 0.0  # wall time of its last status change, from the health view
        # Only a passed check makes it eligible, not `unknown` (a route without fail-open).
        self.need_up = False
        self.admin = "enabled"  # enabled | drain | disabled
        self.ejected = False
        self.up_since: float | None = None  # wall time it came back up, for slow start
        self.active = 0  # requests (http) or connections (tcp) in flight
        self.idle: list[UpstreamConn] = []  # pooled keep-alive connections, LIFO
        self.inflight: set[Any] = set()  # upstream connections busy with a request
        self.consecutive_failures = 0
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0, 0]  # by status class 1xx..5xx; [0]: no response
        self.retries = 0
        self.connect_failures = 0
        self.spliced = 0  # tcp connections handed to splice(2) for bulk data
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    @property
    def eligible(self) -> bool:
        """Whether new requests may go here (ignoring fail-open)."""
        healthy = self.status == "up" if self.need_up else self.status != "down"
        return healthy and self.admin == "enabled" and not self.ejected

    def observe_latency(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def stats(self) -> dict[str, object]:
        """Counters for the controller (summed over workers there)."""
        return {
            "active": self.active,
            "requests": self.requests,
            "responses": list(self.responses),
            "retries": self.retries,
            "connect_failures": self.connect_failures,
            "spliced": self.spliced,
            "buckets": list(self.buckets),
            "latency_sum": self.latency_sum,
            "idle": len(self.idle),
        }
