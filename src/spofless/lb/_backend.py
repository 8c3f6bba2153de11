"""One backend as a worker sees it: health view, admin state, pool, counters.

Plain mutable state touched on the hot path: attributes, no properties that
compute, no locks (one event loop per worker).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from spofless.lb._settings import BackendSpec

if TYPE_CHECKING:
    from spofless.lb._http import Request
    from spofless.lb._redis import RedisUpstream
    from spofless.lb._tcp import TcpClient
    from spofless.lb._upstream import UpstreamConn

# Latency histogram upper bounds in seconds (Prometheus-style cumulative on export).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _no_wake() -> None:
    pass


def may_take_requests(status: str, admin: str, ejected: bool, *, need_up: bool) -> bool:
    """Whether a backend may get new requests (ignoring fail-open): healthy (`up`; or not
    `down` where an unchecked backend is trusted), enabled and not ejected."""
    healthy = status == "up" if need_up else status != "down"
    return healthy and admin == "enabled" and not ejected


def response_class(status: int) -> int:
    """The index in `Backend.responses` of a response with `status` (0: not a status)."""
    return status // 100 if 100 <= status < 600 else 0


class Backend:
    """A backend's state in one worker.

    `begin` and `finish` own the per-request bookkeeping: every request (http) or
    connection (tcp) sent here calls `begin` once and `finish` once, whichever way
    it ends (HAProxy's `sess_change_server()`). `finish` also tells the balancer's
    queue that a slot is free.
    """

    __slots__ = (
        "active",
        "admin",
        "backup",
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
        "queue",
        "requests",
        "responses",
        "retries",
        "since",
        "slow_start",
        "spliced",
        "status",
        "up_since",
        "wake",
        "weight",
    )

    def __init__(
        self,
        spec: BackendSpec,
        queue: deque[Request] | None = None,
        wake: Callable[[], None] = _no_wake,
    ) -> None:
        self.name = spec.name
        self.host = spec.host
        self.port = spec.port
        self.base_weight = float(spec.weight)
        self.weight = float(spec.weight)  # effective: 0 when not eligible, slow start applied
        self.backup = spec.backup  # serves only while no primary of its route can
        self.slow_start = 0.0  # seconds of its ramp to full weight (its route's setting)
        self.status = "unknown"  # up | down | unknown, from the health view
        self.since = 0.0  # wall time of its last status change, from the health view
        # Only a passed check makes it eligible, not `unknown` (a route without fail-open).
        self.need_up = False
        self.admin = "enabled"  # enabled | drain | disabled
        self.ejected = False
        # Wall time it came back up or was enabled again: its slow start counts from here.
        self.up_since: float | None = None
        self.active = 0  # requests (http) or connections (tcp) in flight
        self.idle: list[UpstreamConn] = []  # pooled keep-alive connections, LIFO
        # Connections busy with a request: http upstreams, or tcp clients.
        self.inflight: set[UpstreamConn | TcpClient | RedisUpstream] = set()
        self.queue: deque[Request] = deque() if queue is None else queue  # the balancer's
        self.wake = wake  # called when a slot frees while requests wait in `queue`
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
        return may_take_requests(self.status, self.admin, self.ejected, need_up=self.need_up)

    def begin(self) -> None:
        """A request (http) or connection (tcp) starts here."""
        self.active += 1
        self.requests += 1

    def finish(self, outcome: int | None, latency: float | None = None) -> None:
        """What `begin` started is over.

        `outcome` is the `responses` index to count (`response_class`, 0 for no
        response), or None when nothing is counted here: the request is retried
        elsewhere or its client has gone. `latency`: seconds to a complete response,
        for the histogram.
        """
        self.active -= 1
        if outcome is not None:
            self.responses[outcome] += 1
        if latency is not None:
            self.buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
            self.latency_sum += latency
        if self.queue:
            self.wake()
