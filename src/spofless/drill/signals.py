"""Ctrl-C and SIGTERM during a drill: they end it, but never in the middle of a step.

While a fault is applied or taken back (`held()`), SIGINT and SIGTERM wait for the end
of that step and are delivered then (`Interrupted`), so that no fault is left half
done; outside a step they are delivered at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(Exception):
    """SIGINT or SIGTERM, delivered between two steps."""


class SignalGate:
    """SIGINT and SIGTERM, while a fault is applied or taken back, wait for the end of
    that step (`held`). A Python handler, not a signal mask: a mask on the main thread
    lets the kernel hand the signal to another thread (the traffic's, the status
    watch's), whose handler then interrupts the main thread anyway, or loses it."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    def handler(self, signum: int, frame: object) -> None:
        if self.depth > 0:
            self.pending = True  # delivered when the step is done
            return
        raise Interrupted()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending:
            self.pending = False
            raise Interrupted()


_GATE = SignalGate()


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM end the drill (its faults taken back), except while a fault is
    applied or taken back: then at the end of that step (see SignalGate)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _GATE.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def held_signals() -> contextlib.AbstractContextManager[None]:
    """SIGINT and SIGTERM wait while a fault is applied or taken back (delivered after)."""
    return _GATE.held()
