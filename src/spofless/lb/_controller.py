"""The controller: the parent process of the workers and the owner of the health view.

It binds the listening sockets (one per worker, SO_REUSEPORT), runs the
active health checks, merges passive observations and ejections reported by
workers, and pushes the resulting view to every worker the moment it changes
(so every worker sees a change within one check interval, in practice within
milliseconds). It also serves the admin API, restarts a worker that dies,
reloads on SIGHUP (new workers on the same sockets, old ones drain) and stops
gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spofless.health import HealthMonitor, Status, Target, Transition
from spofless.lb._channel import LineChannel, Message
from spofless.lb._policy import OutlierPolicy
from spofless.lb._settings import LbSettings

logger = logging.getLogger(__name__)


@dataclass
class BackendView:
    """The controller's verdict on one backend, pushed to workers."""

    admin: str = "enabled"  # enabled | drain | disabled, set through the admin API
    ejected_until: float = 0.0
    ejections: int = 0
    up_since: float | None = None  # set when it comes back up: slow start
    last_change: float = field(default_factory=time.time)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    chan: LineChannel
    index: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stats: dict[str, Any] = field(default_factory=dict)
    retired: bool = False


class Controller:
    def __init__(
        self, settings: LbSettings, reload: Callable[[], LbSettings] | None = None
    ) -> None:
        self.settings = settings
        self._reload = reload
        self.sockets: list[socket.socket] = []
        self.workers: list[Worker] = []
        self.spawned: list[Worker] = []  # every worker started and not yet exited
        self.views: dict[str, BackendView] = {}
        self.monitors: list[HealthMonitor] = []
        self.retired_stats: dict[str, dict[str, Any]] = {}
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
        view.last_change = time.time()
        if transition.new is Status.UP and transition.old is Status.DOWN:
            view.up_since = time.time()
        self.broadcast()

    def view_message(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {
            name: {
                "status": str(self.status_of(name)),
                "since": self._since(name),
                "admin": v.admin,
                "ejected": v.ejected_until > now,
                "up_since": v.up_since,
            }
            for name, v in self.views.items()
        }

    def _since(self, name: str) -> float:
        m = self._monitor_of(name)
        return m.health(name).since if m else 0.0

    def broadcast(self) -> None:
        msg = {"t": "view", "view": self.view_message()}
        # Every worker still running: also those starting (their first view, sent with the
        # settings, is older than the checks that end while they boot) and those draining.
        self.spawned = [w for w in self.spawned if w.proc.poll() is None]
        for w in self.spawned:
            w.chan.send(msg)

    def eject(self, name: str, detail: str) -> None:
        view = self.views.get(name)
        if view is None or view.ejected_until > time.time():
            self.broadcast()  # the worker ejected locally; keep everyone on one view
            return
        view.ejections += 1
        seconds = self.outliers.ejection_time(view.ejections)
        view.ejected_until = time.time() + seconds
        logger.info("%s: %s ejected for %.1fs: %s", self.settings.instance, name, seconds, detail)
        # Re-admitted through health checks: `rise` passes are needed after the ejection.
        m = self._monitor_of(name)
        if m is not None:
            m.force(name, Status.DOWN, f"ejected: {detail}")
        asyncio.get_running_loop().call_later(seconds + 0.01, self.broadcast)
        self.broadcast()

    def set_admin(self, name: str, state: str) -> None:
        self.views[name].admin = state
        logger.info("%s: %s set to %s", self.settings.instance, name, state)
        self.broadcast()

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
            {
                "t": "settings",
                "settings": self.settings.model_dump(mode="json"),
                "view": self.view_message(),
            }
        )
        return w

    def _on_worker(self, w: Worker, msg: Message) -> None:
        kind = msg["t"]
        if kind == "ready":
            w.ready.set()
        elif kind == "stats":
            w.stats = msg["backends"]
        elif kind == "obs":
            m = self._monitor_of(msg["b"])
            if m is not None:
                transition = m.observe(
                    msg["b"], msg["ok"], definite=msg["definite"], detail=msg["detail"]
                )
                if transition is None:
                    self.broadcast()  # the worker changed its local view; realign it
        elif kind == "eject":
            self.eject(msg["b"], msg["detail"])

    async def _start_workers(self) -> list[Worker]:
        workers = [await self._spawn(i) for i in range(self.settings.workers)]
        async with asyncio.timeout(30):
            await asyncio.gather(*(w.ready.wait() for w in workers))
        return workers

    async def _retire(self, workers: list[Worker]) -> None:
        for w in workers:
            w.retired = True
            w.chan.send({"t": "stop"})
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
                acc = self.retired_stats.setdefault(name, {})
                _add_stats(acc, st, skip_gauges=True)

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
        if (new.listen_host, new.listen_port, new.workers) != (
            self.settings.listen_host,
            self.settings.listen_port,
            self.settings.workers,
        ) and new.listen_port != self.port:
            logger.error(
                "%s: reload cannot change listen address or workers; restart instead",
                self.settings.instance,
            )
            return
        for m in self.monitors:
            await m.stop()
        self.settings = new
        self._setup(new)
        for m in self.monitors:
            m.start()
        old = self.workers
        self.workers = await self._start_workers()
        logger.info("%s: reloaded; %d old worker(s) draining", new.instance, len(old))
        await self._retire(old)

    def totals(self) -> dict[str, dict[str, Any]]:
        """Counters per backend summed over live and retired workers."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.views:
            acc: dict[str, Any] = {}
            _add_stats(acc, self.retired_stats.get(name, {}), skip_gauges=False)
            for w in self.workers:
                _add_stats(acc, w.stats.get(name, {}), skip_gauges=False)
            out[name] = acc
        return out


def _add_stats(acc: dict[str, Any], st: dict[str, Any], *, skip_gauges: bool) -> None:
    for k, v in st.items():
        if skip_gauges and k in ("active", "idle"):
            continue
        if isinstance(v, list):
            cur = acc.setdefault(k, [0] * len(v))
            for i, x in enumerate(v):
                cur[i] += x
        else:
            acc[k] = acc.get(k, 0) + v


def run_lb(settings: LbSettings, reload: Callable[[], LbSettings] | None = None) -> None:
    """Run a load balancer until SIGTERM/SIGINT (the one entry point of both CLIs)."""
    import uvloop

    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    async def main() -> None:
        await Controller(settings, reload).run()

    uvloop.run(main())
