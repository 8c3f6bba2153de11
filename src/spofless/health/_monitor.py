"""The health monitor: runs active checks on a set of targets and keeps their status.

One task per target runs its check every `interval` seconds (a check never
overlaps the previous one of the same target) and feeds the result to the
target's `Detector`. Passive observations (a proxy that saw a connection
refused) go through `observe()` into the same detector, so active and
passive evidence decide together. Every transition is logged in one line and
handed to `on_change`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from spofless.health._checks import CheckResult, run_check
from spofless.health._detector import Detector, Status, Transition
from spofless.topology import HealthCheck

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One instance to check: a name for logs and where it listens."""

    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """A snapshot of one target's health, for status pages."""

    status: Status
    since: float  # time.time() of the last transition
    last_result: CheckResult | None
    last_check: float | None  # time.time() of the last active check


OnChange = Callable[[str, Transition], None]


class HealthMonitor:
    """Active checks plus passive observations for a set of targets (`add`/`remove`
    change it while it runs: a load balancer's backends added through its admin API)."""

    def __init__(
        self,
        targets: list[Target],
        spec: HealthCheck,
        on_change: OnChange | None = None,
        *,
        initial: Status = Status.UNKNOWN,
    ) -> None:
        self.spec = spec
        self.targets = {t.name: t for t in targets}
        self._on_change = on_change
        self._detectors = {t.name: Detector(spec.fall, spec.rise, initial=initial) for t in targets}
        now = time.time()
        self._since = dict.fromkeys(self.targets, now)
        self._last: dict[str, CheckResult | None] = dict.fromkeys(self.targets)
        self._last_at: dict[str, float | None] = dict.fromkeys(self.targets)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started = False

    def start(self) -> None:
        """Start checking every target (needs a running event loop)."""
        if self._started:
            return
        self._started = True
        for name in self.targets:
            self._start(name)

    def _start(self, name: str) -> None:
        self._tasks[name] = asyncio.create_task(self._run(name), name=f"health:{name}")

    async def stop(self) -> None:
        """Stop every check and wait for them to end."""
        tasks, self._tasks = list(self._tasks.values()), {}
        self._started = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def add(self, target: Target, initial: Status = Status.UNKNOWN) -> None:
        """Check `target` too, from status `initial` (checked at once when running).
        ValueError when a target of that name is checked already."""
        if target.name in self.targets:
            raise ValueError(f"{target.name} is checked already")
        self.targets[target.name] = target
        self._detectors[target.name] = Detector(self.spec.fall, self.spec.rise, initial=initial)
        self._since[target.name] = time.time()
        self._last[target.name] = None
        self._last_at[target.name] = None
        if self._started:
            self._start(target.name)

    def remove(self, name: str) -> None:
        """Stop checking target `name` (its check is cancelled; nothing if unknown)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        for d in (self.targets, self._detectors, self._since, self._last, self._last_at):
            d.pop(name, None)

    def status(self, name: str) -> Status:
        return self._detectors[name].status

    def view(self) -> dict[str, Status]:
        """Every target's current status."""
        return {name: d.status for name, d in self._detectors.items()}

    def health(self, name: str) -> TargetHealth:
        return TargetHealth(
            self._detectors[name].status, self._since[name], self._last[name], self._last_at[name]
        )

    def observe(
        self, name: str, ok: bool, *, definite: bool = False, detail: str = ""
    ) -> Transition | None:
        """Feed a passive observation (or any outside result) into a target's detector."""
        transition = self._detectors[name].observe(ok, definite=definite, detail=detail)
        if transition is not None:
            self._changed(name, transition)
        return transition

    def force(self, name: str, status: Status, reason: str) -> Transition | None:
        """Set a target's status from outside (e.g. an ejection by outlier detection)."""
        transition = self._detectors[name].force(status, reason)
        if transition is not None:
            self._changed(name, transition)
        return transition

    def _changed(self, name: str, transition: Transition) -> None:
        self._since[name] = time.time()
        logger.info(
            "%s is %s (was %s): %s", name, transition.new, transition.old, transition.reason
        )
        if self._on_change is not None:
            self._on_change(name, transition)

    async def _run(self, name: str) -> None:
        target = self.targets[name]
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            result = await run_check(self.spec, target.host, target.port)
            self._last[name] = result
            self._last_at[name] = time.time()
            self.observe(name, result.ok, definite=result.definite, detail=result.detail)
            await asyncio.sleep(max(0.0, started + self.spec.interval - loop.time()))
