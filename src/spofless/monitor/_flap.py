"""Flap damping: an instance that keeps changing state is reported once, as flapping.

An instance whose observed state changed `count` times within `window`
seconds is flapping: one event says so (with the count), its further changes
make no event, and the analysis counts it as down (it cannot be relied on),
so alerts do not fire and resolve at every change. It stops flapping once it
has kept one state for a whole `window`; then that state counts again. Pure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FlapVerdict:
    """What one observed change means after damping."""

    flapping: bool
    started: bool  # it just began flapping: report it once
    changes: int  # changes within the window


@dataclass
class FlapDamper:
    window: float
    count: int
    _changes: dict[str, deque[float]] = field(default_factory=dict)
    _flapping: set[str] = field(default_factory=set)

    def changed(self, subject: str, now: float) -> FlapVerdict:
        """Record that `subject` changed state at `now`."""
        times = self._changes.setdefault(subject, deque())
        times.append(now)
        self._forget(times, now)
        started = False
        if len(times) >= self.count and subject not in self._flapping:
            self._flapping.add(subject)
            started = True
        return FlapVerdict(subject in self._flapping, started, len(times))

    def settled(self, now: float) -> list[str]:
        """The subjects that stopped flapping by `now` (no change for a whole window)."""
        out = []
        for subject in sorted(self._flapping):
            times = self._changes[subject]
            if not times or now - times[-1] >= self.window:
                out.append(subject)
        for subject in out:
            self._flapping.discard(subject)
            self._changes[subject].clear()
        return out

    def flapping(self, subject: str) -> bool:
        return subject in self._flapping

    def _forget(self, times: deque[float], now: float) -> None:
        while times and now - times[0] > self.window:
            times.popleft()
