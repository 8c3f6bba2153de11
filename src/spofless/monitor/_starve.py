"""A starved monitor does not call healthy instances down.

    Starvation(threshold, quiet)         the monitor's own lateness (event-loop lag)
      .sample(lag, now) -> bool | None   True: starved from now, False: no longer
      .worst_since(t) -> float           the worst lag seen since t
    Doubt(limit)                         per instance: its looks that cannot be trusted
      .judge(name, obs, late, bound) -> Observation | None
    watch_loop_lag(starvation, stop, on_change)   the timer that measures the lag

A look is bounded by `probe_timeout`; when the monitor's own process or event
loop gets no CPU (a loaded machine, a SIGSTOP), every look times out at once and
each instance would look down. The rule:

- A look that got an answer, good or bad, is believed: the instance answered.
- A refused or reset connection is believed at once: nothing listens (a killed
  process is down in one look, however late the monitor is).
- A look that timed out while the monitor itself was late by at least
  STARVED_FRACTION of the bound is *unknown*: it is not a failed look (it does
  not count towards `fall`), the instance keeps its state, and the next round
  looks again. The monitor's lateness for a look is the worst of how much the look
  overran its bound (a timer fires late when the loop is late) and the worst
  event-loop lag measured while it ran.
- Bounded: the MAX_UNKNOWN-th unknown look in a row of one instance counts as
  down (a definite failure), so a member that truly hangs is still found by a
  monitor that stays starved. Any believed look starts the count again.
- A timeout while the monitor was on time is a failed look, as before.

The monitor is *starved* from a loop-lag sample at or above the threshold until
`quiet` seconds pass without one; each change is logged once, naming the monitor
(events `monitor_starved`, `monitor_starved_ended`), and shown on /status
(`starved`, `loop_lag`) and /metrics (`spofless_monitor_loop_lag_seconds`,
`spofless_monitor_starved`, `spofless_monitor_unknown_looks_total`). Pure but
for `watch_loop_lag`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable

from spofless.monitor._probe import Observation

# A monitor late by this fraction of probe_timeout does not trust its timeouts: under
# it, a look that timed out had most of its bound to get an answer.
STARVED_FRACTION = 0.2
# Unknown looks in a row of one instance before it counts as down: with the default
# 0.5 s bound, a starved round takes at least 0.5 s, so at least 2.5 s of doubt.
MAX_UNKNOWN = 5
# The loop-lag timer ticks this often (its lateness is the lag).
LAG_TICK = 0.1
# Starved ends after this long without a late tick (one late tick in a loaded second is
# not an end).
QUIET = 5.0


class Starvation:
    """The monitor's event-loop lag, sampled by a timer; whether it is starved."""

    def __init__(self, threshold: float, quiet: float = QUIET, keep: int = 256) -> None:
        self.threshold = threshold
        self.quiet = quiet
        self.starved = False
        self.lag = 0.0  # the latest sample
        self.peak = 0.0  # the worst sample while starved, or the latest when not
        self._last_late = 0.0
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)

    def sample(self, lag: float, now: float) -> bool | None:
        """Record one tick `lag` seconds late at `now`; True when the monitor becomes
        starved, False when it stops being so, None when nothing changed."""
        self.lag = lag
        self._samples.append((now, lag))
        if lag >= self.threshold:
            self._last_late = now
            self.peak = max(self.peak, lag) if self.starved else lag
            if not self.starved:
                self.starved = True
                return True
            return None
        if self.starved and now - self._last_late >= self.quiet:
            self.starved = False
            self.peak = lag
            return False
        if not self.starved:
            self.peak = lag
        return None

    def worst_since(self, since: float) -> float:
        """The worst lag of the ticks that fired at or after `since`."""
        return max((lag for at, lag in self._samples if at >= since), default=0.0)


class Doubt:
    """Which looks to believe (the rule in the module docstring)."""

    def __init__(self, limit: int = MAX_UNKNOWN, fraction: float = STARVED_FRACTION) -> None:
        self.limit = limit
        self.fraction = fraction
        self.unknown: dict[str, int] = {}  # consecutive unknown looks, by instance
        self.total = 0  # unknown looks since start

    def judge(self, name: str, obs: Observation, late: float, bound: float) -> Observation | None:
        """The look to fold in, or None: unknown, look again. `late`: how late the
        monitor was while it looked; `bound`: the look's timeout."""
        if not obs.timed_out or late < self.fraction * bound:
            self.unknown.pop(name, None)
            return obs
        n = self.unknown.get(name, 0) + 1
        if n < self.limit:
            self.unknown[name] = n
            self.total += 1
            return None
        self.unknown.pop(name, None)
        detail = f"{obs.detail} ({n} looks in a row, this monitor late by up to {late:.1f}s)"
        return dataclasses.replace(obs, detail=detail, definite=True)


async def watch_loop_lag(
    starvation: Starvation,
    stop: asyncio.Event,
    on_change: Callable[[bool, float], None],
    tick: float = LAG_TICK,
) -> None:
    """Until `stop`: sleep `tick`, measure how late the wake-up was; `on_change(starved,
    lag)` when the monitor becomes starved or stops being so."""
    while not stop.is_set():
        due = time.monotonic() + tick
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(tick):
                await stop.wait()
        lag = max(0.0, time.monotonic() - due)
        change = starvation.sample(lag, time.monotonic())
        if change is not None:
            on_change(change, lag)
