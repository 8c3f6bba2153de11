"""The controller: the parent process of the workers and the owner of the health view.

It binds the listening sockets (one per worker, SO_REUSEPORT), runs the
active health checks, merges passive observations and ejections reported by
workers, and pushes the resulting view to every worker the moment it changes
(so every worker sees a change within one check interval, in practice within
milliseconds). It also serves the admin API, restarts a worker that dies,
reloads on SIGHUP (new workers on the same sockets, old ones drain) and stops
gracefully on SIGTERM/SIGINT.

Backends added or removed through the admin API survive a reload (`_changes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spofless.health import HealthMonitor, Status, Target, Transition
from spofless.lb._changes import Refused, overlay
from spofless.lb._channel import LineChannel
from spofless.lb._handover import RouteTier, follow, route_keys
from spofless.lb._messages import (
    AdminChange,
    BackendState,
    BackendStats,
    BackendView,
    Ejection,
    Message,
    Observation,
    Ready,
    Routes,
    Settings,
    Stats,
    Stop,
    View,
    merge,
    worker_view,
)
from spofless.lb._policy import OutlierPolicy
from spofless.lb._settings import BackendSpec, LbSettings

logger = logging.getLogger(__name__)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    chan: LineChannel
    index: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stats: dict[str, BackendStats] = field(default_factory=dict)
    view_seq: int = 0  # the last view it had applied when it sent its counters
    retired: bool = False


def reload_refusal(old: LbSettings, new: LbSettings, bound_port: int) -> str | None:
    """Why a reload from `old` to `new` cannot happen on the running sockets, or None.

    The sockets stay bound: the host cannot change, nor can the port (a `new` port
    equal to the one bound, e.g. after `0`, is no change), nor the workers unless
    the port is the one bound.
    """
    if new.listen_host != old.listen_host:
        return f"the listen host cannot change ({old.listen_host} -> {new.listen_host})"
    if new.listen_port == bound_port:
        return None
    if (new.listen_port, new.workers) != (old.listen_port, old.workers):
        return "the listen port and the number of workers cannot change"
    return None


class Controller:
    def __init__(
        self, settings: LbSettings, reload: Callable[[], LbSettings] | None = None
    ) -> None:
        self.base = settings  # as read from the file or flags, without the runtime changes
        self.settings = settings  # what runs: `base` with `added` and `removed` applied
        # Changes through the admin API, applied again over every reload:
        self.added: dict[str, tuple[str, BackendSpec]] = {}  # name -> (route key, spec)
        self.removed: set[str] = set()
        self.removing: dict[str, asyncio.Task[None]] = {}  # drained, then removed
        self._reload = reload
        self.sockets: list[socket.socket] = []
        self.workers: list[Worker] = []
        self.spawned: list[Worker] = []  # every worker started and not yet exited
        self.views: dict[str, BackendView] = {}
        self.monitors: list[HealthMonitor] = []
        self.retired_stats: dict[str, BackendStats] = {}
        self.view_seq = 0  # the number of the last view broadcast (see _messages.View)
        self.tiers: dict[str, RouteTier] = {}  # each route's serving tier, by route_keys
        self.stopping = asyncio.Event()
        self.admin_server: asyncio.AbstractServer | None = None
        self._setup(settings)

    # -- health view ----------------------------------------------------------

    def _setup(self, settings: LbSettings) -> None:
        opts = settings.options
        self.outliers = OutlierPolicy(
            opts.outlier_failures, opts.outlier_base_ejection, opts.outlier_max_ejection
        )
        old = self.views
        self.views = {name: old.get(name, BackendView()) for name in settings.backends()}
        tiers = self.tiers
        self.tiers = {key: tiers.get(key, RouteTier()) for key in route_keys(settings.routes)}
        self.monitors = []
        seen: set[str] = set()
        for route in settings.routes:
            targets = [
                Target(b.name, b.host, b.check_port or b.port)
                for b in route.backends
                if b.name not in seen
            ]
            seen.update(t.name for t in targets)
            if targets:
                # Unknown until the first check: workers still send traffic (fail open).
                self.monitors.append(HealthMonitor(targets, route.health, self._on_change))
        self._follow_routes(self.view_message())

    def _monitor_of(self, name: str) -> HealthMonitor | None:
        for m in self.monitors:
            if name in m.targets:
                return m
        return None

    def status_of(self, name: str) -> Status:
        m = self._monitor_of(name)
        return m.status(name) if m else Status.UNKNOWN

    def _on_change(self, name: str, transition: Transition) -> None:
        view = self.views.get(name)
        if view is None:
            return
        self.views[name] = merge(view, transition, time.time(), self.outliers)
        self.broadcast()

    def view_message(self) -> dict[str, BackendState]:
        health: dict[str, tuple[Status, float]] = {}
        for name in self.views:
            m = self._monitor_of(name)
            if m is not None:
                health[name] = (m.status(name), m.health(name).since)
        return worker_view(self.views, health, time.time())

    def broadcast(self) -> None:
        self.view_seq += 1
        msg = View(self.view_message(), self.view_seq)
        self._follow_routes(msg.view)
        # Every worker still running: also those starting (their first view, sent with the
        # settings, is older than the checks that end while they boot) and those draining.
        self.spawned = [w for w in self.spawned if w.proc.poll() is None]
        for w in self.spawned:
            w.chan.send(msg)

    def _follow_routes(self, view: dict[str, BackendState]) -> None:
        """Each route's serving tier after `view`; a hand-over is logged (and counted)."""
        now = time.time()
        for key, route in zip(route_keys(self.settings.routes), self.settings.routes, strict=True):
            self.tiers[key], handover = follow(key, route, view, self.tiers[key], now)
            if handover is not None:
                log = logger.warning if handover.to_backup else logger.info
                log("%s: %s", self.settings.instance, handover.sentence())

    def eject(self, name: str, detail: str) -> None:
        view = self.views.get(name)
        now = time.time()
        new = None if view is None else merge(view, Ejection(name, detail), now, self.outliers)
        if new is None or new is view:
            self.broadcast()  # the worker ejected locally; keep everyone on one view
            return
        self.views[name] = new
        seconds = new.ejected_until - now
        logger.info("%s: %s ejected for %.1fs: %s", self.settings.instance, name, seconds, detail)
        # Re-admitted through health checks: `rise` passes are needed after the ejection.
        m = self._monitor_of(name)
        if m is not None:
            m.force(name, Status.DOWN, f"ejected: {detail}")
        asyncio.get_running_loop().call_later(seconds + 0.01, self.broadcast)
        self.broadcast()

    def set_admin(self, name: str, state: str) -> None:
        self.views[name] = merge(self.views[name], AdminChange(state), time.time(), self.outliers)
        logger.info("%s: %s set to %s", self.settings.instance, name, state)
        self.broadcast()

    # -- backends added and removed at runtime ---------------------------------

    def _overlay(self, base: LbSettings) -> LbSettings:
        return overlay(base, self.added, self.removed)

    def add_backend(self, key: str, spec: BackendSpec) -> None:
        """Add `spec` to route `key`: health-checked from down (it serves once its check
        passed `rise` times, then ramps up over the route's slow start). Refused (404,
        409) for an unknown route, a name in use, a route that sends to one primary, or
        mode redis (a shard's routes follow its agents)."""
        s = self.settings
        keys = route_keys(s.routes)
        if s.mode == "redis":
            raise Refused(409, "in mode redis a shard's routes follow its agents: none is added")
        if key not in keys:
            raise Refused(404, f"no route {key!r}; routes: {', '.join(keys)}")
        route = s.routes[keys.index(key)]
        if route.exclusive:
            raise Refused(
                409,
                f"route {key} sends to one primary, chosen by its health checks: "
                "no backend is added to it",
            )
        if spec.name in self.views:
            raise Refused(409, f"a backend named {spec.name!r} exists already")
        self.added[spec.name] = (key, spec)
        self.removed.discard(spec.name)
        try:
            new = self._overlay(self.base)
        except ValueError as exc:
            del self.added[spec.name]
            raise Refused(400, str(exc)) from None
        self.settings = new
        self.views[spec.name] = BackendView()
        monitor = self._monitor_of(route.backends[0].name)
        assert monitor is not None  # every route's backends are checked
        target = Target(spec.name, spec.host, spec.check_port or spec.port)
        monitor.add(target, initial=Status.DOWN)
        logger.info(
            "%s: %s added to route %s (%s:%d); it serves once healthy",
            s.instance,
            spec.name,
            key,
            spec.host,
            spec.port,
        )
        self._send_routes()

    def remove_backend(self, name: str) -> None:
        """Drain backend `name`, then remove it from every route once no worker sends it
        anything (or after `drain_timeout`). Refused (404, 409) for an unknown backend or
        the last primary of a route."""
        if name not in self.views:
            raise Refused(404, f"no backend {name!r}")
        if name in self.removing:
            return
        leaving = self.removed | set(self.removing) | {name}  # it leaves once drained
        try:
            overlay(self.base, self.added, leaving)
        except ValueError as exc:
            raise Refused(409, f"{name} cannot be removed: {exc}") from None
        self.set_admin(name, "drain")
        task = asyncio.get_running_loop().create_task(self._remove_drained(name, self.view_seq))
        self.removing[name] = task

    async def _remove_drained(self, name: str, seq: int) -> None:
        deadline = time.monotonic() + self.settings.options.drain_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            applied = all(w.view_seq >= seq for w in self.workers)
            if applied and self.totals().get(name, BackendStats()).active == 0:
                break
        else:
            logger.warning(
                "%s: %s still had requests open after %gs; removed anyway",
                self.settings.instance,
                name,
                self.settings.options.drain_timeout,
            )
        self.removed.add(name)
        self.added.pop(name, None)
        self.settings = self._overlay(self.base)
        monitor = self._monitor_of(name)
        if monitor is not None:
            monitor.remove(name)
        self.views.pop(name, None)
        self.retired_stats.pop(name, None)
        del self.removing[name]
        logger.info("%s: %s removed", self.settings.instance, name)
        self._send_routes()

    def _send_routes(self) -> None:
        """Tell every running worker the routes changed, with the view that goes with them."""
        self.view_seq += 1
        msg = Routes(self.settings.model_dump(mode="json"), self.view_message(), self.view_seq)
        self._follow_routes(msg.view)
        self.spawned = [w for w in self.spawned if w.proc.poll() is None]
        for w in self.spawned:
            w.chan.send(msg)

    # -- workers ----------------------------------------------------------------

    def _bind(self) -> None:
        s = self.settings
        family = socket.AF_INET6 if ":" in s.listen_host else socket.AF_INET
        port = s.listen_port
        for _ in range(s.workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((s.listen_host, port))
            sock.listen(4096)
            sock.set_inheritable(True)
            port = sock.getsockname()[1]
            self.sockets.append(sock)
        self.port = port

    async def _spawn(self, index: int) -> Worker:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        listen = self.sockets[index % len(self.sockets)]
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once, never waits
            [
                sys.executable,
                "-m",
                "spofless.lb._worker",
                str(listen.fileno()),
                str(child.fileno()),
            ],
            pass_fds=(listen.fileno(), child.fileno()),
        )
        child.close()
        holder: list[Worker] = []
        _, chan = await loop.connect_accepted_socket(
            lambda: LineChannel(lambda m: self._on_worker(holder[0], m), lambda: None), sock=parent
        )
        w = Worker(proc, chan, index)
        holder.append(w)
        self.spawned.append(w)
        chan.send(
            Settings(self.settings.model_dump(mode="json"), self.view_message(), self.view_seq)
        )
        return w

    def _on_worker(self, w: Worker, msg: Message) -> None:
        if isinstance(msg, Ready):
            w.ready.set()
        elif isinstance(msg, Stats):
            w.stats = msg.backends
            w.view_seq = msg.view_seq
        elif isinstance(msg, Observation):
            m = self._monitor_of(msg.backend)
            if m is not None:
                transition = m.observe(
                    msg.backend, msg.ok, definite=msg.definite, detail=msg.detail
                )
                if transition is None:
                    self.broadcast()  # the worker changed its local view; realign it
        elif isinstance(msg, Ejection):
            self.eject(msg.backend, msg.detail)

    async def _start_workers(self) -> list[Worker]:
        workers = [await self._spawn(i) for i in range(self.settings.workers)]
        async with asyncio.timeout(30):
            await asyncio.gather(*(w.ready.wait() for w in workers))
        return workers

    async def _retire(self, workers: list[Worker]) -> None:
        for w in workers:
            w.retired = True
            w.chan.send(Stop())
        deadline = time.monotonic() + self.settings.options.drain_timeout + 2
        for w in workers:
            while w.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if w.proc.poll() is None:
                logger.warning(
                    "%s: worker %d did not drain in time", self.settings.instance, w.proc.pid
                )
                w.proc.kill()
                w.proc.wait()
            for name, st in w.stats.items():
                self.retired_stats.setdefault(name, BackendStats()).add(st, gauges=False)

    async def _watch_workers(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(0.2)
            for i, w in enumerate(self.workers):
                if w.proc.poll() is not None and not w.retired:
                    logger.error(
                        "%s: worker %d exited with %s; restarting",
                        self.settings.instance,
                        w.proc.pid,
                        w.proc.returncode,
                    )
                    self.workers[i] = await self._spawn(w.index)

    # -- run ------------------------------------------------------------------

    async def run(self) -> None:
        from spofless.lb._admin import start_admin

        loop = asyncio.get_running_loop()
        self._bind()
        for m in self.monitors:
            m.start()
        self.workers = await self._start_workers()
        if self.settings.admin_port is not None:
            self.admin_server = await start_admin(self)
        logger.info(
            "%s: %s mode listening on %s:%d with %d worker(s)",
            self.settings.instance,
            self.settings.mode,
            self.settings.listen_host,
            self.port,
            self.settings.workers,
        )
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        watcher = loop.create_task(self._watch_workers())
        await self.stopping.wait()
        logger.info("%s: stopping gracefully", self.settings.instance)
        watcher.cancel()
        if self.admin_server is not None:
            self.admin_server.close()
        await self._retire(self.workers)
        for m in self.monitors:
            await m.stop()
        for s in self.sockets:
            s.close()

    async def reload(self) -> None:
        """SIGHUP: read the settings again; new workers take over the same sockets."""
        if self._reload is None:
            return
        try:
            new = self._reload()
        except Exception as exc:  # a bad file changes nothing
            logger.error(
                "%s: reload refused, keeping the running settings: %s", self.settings.instance, exc
            )
            return
        refusal = reload_refusal(self.settings, new, self.port)
        if refusal is not None:
            logger.error(
                "%s: reload refused, keeping the running settings: %s; restart instead",
                self.settings.instance,
                refusal,
            )
            return
        # What the file now names is the file's; the other runtime changes stay.
        named = new.backends()
        self.added = {n: a for n, a in self.added.items() if n not in named}
        try:
            overlaid = self._overlay(new)
        except ValueError as exc:
            logger.error(
                "%s: reload refused, keeping the running settings: with the backends "
                "removed through the admin API: %s",
                self.settings.instance,
                exc,
            )
            return
        for m in self.monitors:
            await m.stop()
        self.base = new
        with contextlib.suppress(ValueError):  # a change made while the checks stopped
            overlaid = self._overlay(new)
        self.settings = overlaid
        self._setup(overlaid)
        for m in self.monitors:
            m.start()
        old = self.workers
        self.workers = await self._start_workers()
        logger.info("%s: reloaded; %d old worker(s) draining", new.instance, len(old))
        await self._retire(old)

    def totals(self) -> dict[str, BackendStats]:
        """Counters per backend summed over live and retired workers."""
        out: dict[str, BackendStats] = {}
        for name in self.views:
            acc = BackendStats()
            if name in self.retired_stats:
                acc.add(self.retired_stats[name])
            for w in self.workers:
                if name in w.stats:
                    acc.add(w.stats[name])
            out[name] = acc
        return out


def run_lb(settings: LbSettings, reload: Callable[[], LbSettings] | None = None) -> None:
    """Run a load balancer until SIGTERM/SIGINT (the one entry point of both CLIs)."""
    import uvloop

    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    async def main() -> None:
        await Controller(settings, reload).run()

    uvloop.run(main())
