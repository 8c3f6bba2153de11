"""A worker's balancing state: backends, routes, algorithms, retry budget, timeouts.

The protocol objects (`_http`, `_tcp`) ask the `Balancer` which backend to
use and tell it what happened; it keeps the health view the controller sends,
applies slow start and passive outlier detection, and reports to the
controller through `report` (a callable that sends one message).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from spofless.lb._algorithms import Algorithm, make_algorithm
from spofless.lb._backend import Backend
from spofless.lb._handover import serving
from spofless.lb._messages import BackendState, BackendStats, Ejection, Message, Observation
from spofless.lb._policy import RetryBudget, slow_start_factor
from spofless.lb._settings import LbSettings, RouteSpec

if TYPE_CHECKING:
    from spofless.lb._http import Request

logger = logging.getLogger(__name__)

TICK = 0.1  # seconds between timeout sweeps and slow-start weight updates


class Timed(Protocol):
    """A connection the sweep watches: `deadline` is a loop time or 0 for none."""

    deadline: float

    def on_timeout(self) -> None: ...


class Route:
    __slots__ = (
        "algorithm",
        "backends",
        "backups",
        "chosen",
        "exclusive",
        "fail_open",
        "live",
        "primaries",
        "spec",
    )

    def __init__(self, spec: RouteSpec, backends: list[Backend], algorithm: Algorithm) -> None:
        self.spec = spec
        self.backends = backends
        self.primaries = [b for b in backends if not b.backup]
        self.backups = [b for b in backends if b.backup]  # serve while no primary can
        self.algorithm = algorithm
        self.fail_open = spec.fail_open
        self.exclusive = spec.exclusive
        self.chosen: Backend | None = None  # exclusive: the one backend new connections get
        # Those that get new requests: with a weight above 0, of the tier that serves
        # (`_handover.serving`); kept by Balancer.reindex.
        self.live = list(backends)


def newest(backends: list[Backend]) -> Backend | None:
    """The backend that came up last (the first in route order on a tie), or None."""
    best: Backend | None = None
    for b in backends:
        if best is None or b.since > best.since:
            best = b
    return best


class Balancer:
    """Per-worker state shared by every connection of that worker."""

    def __init__(
        self,
        settings: LbSettings,
        report: Callable[[Message], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.options = settings.options
        self.report = report or (lambda msg: None)
        self.clock = clock  # wall time, the health view's: slow start counts with it
        self.queue: deque[Request] = deque()  # requests waiting for a connection slot
        self.backends = {
            name: Backend(spec, self.queue, self._slot_freed)
            for name, spec in settings.backends().items()
        }
        self.routes: list[Route] = []
        self._build_routes(settings)
        self.budget = RetryBudget(self.options.retry_budget)
        self.timed: set[Timed] = set()  # connections with deadlines (clients and upstreams)
        self.draining = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self.refresh_weights(clock())  # a route without fail-open starts with none live

    def _build_routes(self, settings: LbSettings) -> None:
        """The routes of `settings` over `self.backends`; a route keeps its algorithm
        (its rotation) when it stays at its place."""
        algorithms = [r.algorithm for r in self.routes]
        self.routes = [
            Route(
                r,
                [self.backends[b.name] for b in r.backends],
                algorithms[i]
                if i < len(algorithms)
                else make_algorithm(self.options.algorithm, hash_balance=self.options.hash_balance),
            )
            for i, r in enumerate(settings.routes)
        ]
        for route in self.routes:
            for b in route.backends:
                b.need_up = b.need_up or not route.fail_open
                b.slow_start = settings.slow_start_of(route.spec)
        self.single_route = len(self.routes) == 1 and self.routes[0].spec.host is None

    def update_routes(self, settings: LbSettings, view: dict[str, BackendState]) -> None:
        """Backends added or removed at runtime (the admin API): those kept keep their
        state and counters, a new one starts from `view`, a removed one (drained by
        then) closes its pooled connections. Requests in flight keep what they hold."""
        self.settings = settings
        old = self.backends
        self.backends = {
            name: old.get(name) or Backend(spec, self.queue, self._slot_freed)
            for name, spec in settings.backends().items()
        }
        for name, b in old.items():
            if name not in self.backends:
                idle, b.idle = b.idle, []
                for up in idle:
                    up.close()
        self._build_routes(settings)
        self.apply_view(view)

    # -- lifecycle ----------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ticker = loop.call_later(TICK, self._tick)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def _tick(self) -> None:
        loop = self.loop
        assert loop is not None
        now = loop.time()
        try:
            expired = [c for c in self.timed if 0 < c.deadline <= now]
            for conn in expired:
                conn.deadline = 0.0
                conn.on_timeout()
            self._expire_queue(now)
            self.refresh_weights(self.clock())
        except Exception:  # a bug in one connection's timeout must not stop the sweep
            logger.exception("%s: timeout sweep failed", self.settings.instance)
        self._ticker = loop.call_later(TICK, self._tick)

    # -- choosing -----------------------------------------------------------

    def route_for(self, host: bytes | None, path: bytes) -> Route:
        if self.single_route:
            return self.routes[0]
        hostname = (host or b"").split(b":", 1)[0].decode("latin-1").lower()
        text = path.decode("latin-1")
        for route in self.routes:
            spec = route.spec
            if spec.host is not None and spec.host.lower() != hostname:
                continue
            if text.startswith(spec.path_prefix):
                return route
        return self.routes[-1]

    def choose(
        self, route: Route, key: bytes | None, tried: Sequence[Backend] | None
    ) -> Backend | None:
        """A backend for a new request; fails open to down backends when no eligible one is left.

        Backends at their connection limit are skipped; None means queue or give up.
        """
        limit = self.options.max_conns_per_backend
        if not tried and limit is None and route.live:
            live = route.live
            if len(live) == 1:  # one backend (an exclusive route): every algorithm's pick
                return live[0] if live[0].weight > 0 else None
            picked = route.algorithm.pick(live, key)  # the common case: no filtering
            return picked if isinstance(picked, Backend) else None
        candidates = [
            b
            for b in route.live
            if (tried is None or b not in tried) and (limit is None or b.active < limit)
        ]
        if not candidates:
            if not route.fail_open:
                return None
            # Fail open: every serving backend is down or tried; try the enabled rest,
            # the primaries before the backups.
            for tier in (route.primaries, route.backups):
                candidates = [
                    b
                    for b in tier
                    if b.admin == "enabled"
                    and b.base_weight > 0
                    and (tried is None or b not in tried)
                    and (limit is None or b.active < limit)
                ]
                if candidates:
                    break
            else:
                return None
            fallback = {c.name: _Full(c) for c in candidates}
            chosen = route.algorithm.pick(list(fallback.values()), key)
            return chosen.backend if isinstance(chosen, _Full) else None
        picked = route.algorithm.pick(candidates, key)
        return picked if isinstance(picked, Backend) else None

    def at_capacity(self, route: Route) -> bool:
        limit = self.options.max_conns_per_backend
        return limit is not None and all(
            b.active >= limit for b in route.backends if b.admin == "enabled"
        )

    def _expire_queue(self, now: float) -> None:
        timeout = self.options.queue_timeout
        while self.queue and self.queue[0].queued_at + timeout <= now:
            self.queue.popleft().on_queue_timeout()

    def _slot_freed(self) -> None:
        # After the current callback: the path that freed the slot finishes first (a
        # retry or the client's next pipelined request keeps its place).
        (self.loop or asyncio.get_event_loop()).call_soon(self.release_slot)

    def release_slot(self) -> None:
        """A slot is free: start the oldest queued request whose client is still there."""
        queue = self.queue
        while queue:
            req = queue.popleft()
            if not req.conn.closed:
                req.dispatch()
                return

    # -- health view and passive checks -------------------------------------

    def apply_view(self, view: dict[str, BackendState]) -> None:
        """Adopt the controller's view: status, admin state, ejection, slow-start start."""
        for name, state in view.items():
            b = self.backends.get(name)
            if b is None:
                continue
            was_eligible = b.eligible
            b.status = state.status
            b.since = state.since
            b.admin = state.admin
            b.ejected = state.ejected
            b.up_since = state.up_since
            if was_eligible and not b.eligible:
                self.abandon(b)
        self.refresh_weights(self.clock())

    def refresh_weights(self, now: float) -> None:
        """Each backend's effective weight at wall time `now`: 0 when not eligible, else
        its weight times its slow-start ramp."""
        for b in self.backends.values():
            if not b.eligible:
                b.weight = 0.0
            else:
                b.weight = b.base_weight * slow_start_factor(b.up_since, now, b.slow_start)
        self.reindex()

    def reindex(self) -> None:
        """Recompute each route's backends with a weight above 0 (after any weight change).

        An exclusive route keeps one of them: the one it has while that stays eligible,
        else the newest. Sticking matters: a primary frozen past its lease and woken may
        answer its health check from a stale view for a moment; it must not take the
        route back from the new primary (its commits are fenced, but the route would
        break for nothing). A stale old primary still up when a new one appears is
        marked down within one detection time and loses the route then.
        """
        for route in self.routes:
            live = serving(route.primaries, route.backups, _weighted)
            if route.exclusive:
                current = route.chosen
                if current is None or current.weight <= 0:
                    current = newest(live)
                    if current is not None and current is not route.chosen:
                        logger.info(
                            "%s: route %s now sends to %s",
                            self.settings.instance,
                            route.spec.name,
                            current.name,
                        )
                route.chosen = current
                live = [current] if current is not None else []
            route.live = live

    def abandon(self, b: Backend) -> None:
        """`b` left rotation: close its pooled connections, retry what can be retried.

        Connections in flight are abandoned when `b` is down or ejected, not when it is
        drained or disabled by an operator.
        """
        idle, b.idle = b.idle, []
        for up in idle:
            up.close()
        if b.status == "down" or b.ejected:
            for conn in list(b.inflight):
                conn.abandon()

    def mark_down_locally(self, b: Backend, detail: str) -> None:
        """A definite failure (refused, reset on connect): stop using `b` here at once."""
        if b.status != "down":
            b.status = "down"
            b.weight = 0.0
            self.reindex()
            self.abandon(b)
        self.report(Observation(b.name, ok=False, definite=True, detail=detail))

    def passive_failure(self, b: Backend, detail: str) -> None:
        """A timeout, reset or 5xx: counts towards ejection."""
        b.consecutive_failures += 1
        if b.consecutive_failures >= self.options.outlier_failures and not b.ejected:
            b.consecutive_failures = 0
            b.ejected = True
            b.weight = 0.0
            self.reindex()
            self.abandon(b)
            self.report(Ejection(b.name, detail))

    def local_stats(self) -> dict[str, BackendStats]:
        """This worker's counters, for the controller (which sums them over workers)."""
        return {
            name: BackendStats(
                active=b.active,
                requests=b.requests,
                responses=list(b.responses),
                retries=b.retries,
                connect_failures=b.connect_failures,
                spliced=b.spliced,
                buckets=list(b.buckets),
                latency_sum=b.latency_sum,
                idle=len(b.idle),
            )
            for name, b in self.backends.items()
        }


def _weighted(b: Backend) -> bool:
    return b.weight > 0


class _Full:
    """A fail-open candidate: a backend seen with its base weight, ignoring health."""

    __slots__ = ("active", "backend", "name", "weight")

    def __init__(self, b: Backend) -> None:
        self.backend = b
        self.name = b.name
        self.weight = b.base_weight
        self.active = b.active
