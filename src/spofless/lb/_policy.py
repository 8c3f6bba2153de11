"""Pure policies of the data plane: retry safety, retry budget, outlier ejection, slow start."""

from __future__ import annotations

from collections import deque

# RFC 9110 idempotent methods that a proxy may replay after a reset or timeout.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


def may_retry(method: bytes, *, sent: bool, response_started: bool) -> bool:
    """Whether a failed attempt may be replayed on another backend.

    Never once a response byte reached the client; always when the request
    was never sent (connect failure); otherwise only idempotent methods, so a
    POST that may have reached a backend is never replayed.
    """
    if response_started:
        return False
    if not sent:
        return True
    return method in IDEMPOTENT


class RetryBudget:
    """Retries allowed as a fraction of requests over a sliding window (Envoy/Finagle style).

    `min_retries` per window are always allowed so that a quiet balancer can
    still retry; beyond that, retries stay under `ratio` x requests.
    """

    def __init__(self, ratio: float, window: float = 10.0, min_retries: int = 10) -> None:
        self.ratio = ratio
        self.window = window
        self.min_retries = min_retries
        self._slots: deque[list[float]] = deque()  # [second, requests, retries]
        self._current: list[float] = [0.0, 0.0, 0.0]  # the newest slot, for the fast path
        self._current_end = -1.0  # its second ends here

    def _slot(self, now: float) -> list[float]:
        if self._current_end > now >= self._current[0]:
            return self._current
        sec = float(int(now))
        slots = self._slots
        if not slots or slots[-1][0] != sec:
            slots.append([sec, 0.0, 0.0])
            while slots and slots[0][0] <= sec - self.window:
                slots.popleft()
        self._current, self._current_end = slots[-1], sec + 1.0
        return self._current

    def record_request(self, now: float) -> None:
        if self._current_end > now >= self._current[0]:
            self._current[1] += 1  # once per request: no call, no allocation
        else:
            self._slot(now)[1] += 1

    def try_spend(self, now: float) -> bool:
        """Take one retry from the budget; False when it is spent."""
        slot = self._slot(now)
        requests: float = sum(s[1] for s in self._slots)
        retries: float = sum(s[2] for s in self._slots)
        if retries < self.min_retries or retries < self.ratio * requests:
            slot[2] += 1
            return True
        return False


class OutlierPolicy:
    """Consecutive failures eject a backend for a time that doubles with each ejection."""

    def __init__(self, failures: int, base: float, maximum: float) -> None:
        self.failures = failures
        self.base = base
        self.maximum = maximum

    def ejection_time(self, ejections: int) -> float:
        """How long the `ejections`-th ejection (1-based) lasts."""
        return min(self.maximum, self.base * float(2 ** max(0, ejections - 1)))


def slow_start_factor(up_since: float | None, now: float, period: float) -> float:
    """Fraction of its weight a backend gets, ramping from 10% to 100% over `period`."""
    if up_since is None or period <= 0:
        return 1.0
    elapsed = now - up_since
    if elapsed >= period:
        return 1.0
    return max(0.1, elapsed / period)
