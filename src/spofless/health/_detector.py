"""The up/down detector: a pure state machine over check results.

`fall` consecutive failures mark an instance down and `rise` consecutive
successes mark it up again (HAProxy's semantics). A *definite* failure (the
connection was refused or reset: nothing listens) marks it down at once when
`definite_down` is set, because waiting for more evidence only lengthens the
outage. The first result decides an instance whose state is still unknown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    """Health of one instance as the detector sees it."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of status and the sentence that explains it."""

    old: Status
    new: Status
    reason: str


class Detector:
    """Up/down state of one instance, fed one observation at a time."""

    __slots__ = ("_fails", "_oks", "definite_down", "fall", "rise", "status")

    def __init__(
        self,
        fall: int = 2,
        rise: int = 2,
        *,
        definite_down: bool = True,
        initial: Status = Status.UNKNOWN,
    ) -> None:
        if fall < 1 or rise < 1:
            raise ValueError("fall and rise must be at least 1")
        self.fall = fall
        self.rise = rise
        self.definite_down = definite_down
        self.status = initial
        self._fails = 0
        self._oks = 0

    def observe(self, ok: bool, *, definite: bool = False, detail: str = "") -> Transition | None:
        """Record one result; return the transition it causes, if any.

        `definite` marks a failure that leaves no doubt (refused, reset).
        `detail` is carried into the transition's reason.
        """
        old = self.status
        suffix = f": {detail}" if detail else ""
        if ok:
            self._fails = 0
            self._oks += 1
            if old is Status.UNKNOWN or (old is Status.DOWN and self._oks >= self.rise):
                self.status = Status.UP
                self._oks = 0
                what = (
                    "first check passed" if old is Status.UNKNOWN else f"{self.rise} checks passed"
                )
                return Transition(old, Status.UP, what)
            return None
        self._oks = 0
        self._fails += 1
        if old is Status.DOWN:
            return None
        if old is Status.UNKNOWN:
            self.status = Status.DOWN
            self._fails = 0
            return Transition(old, Status.DOWN, "first check failed" + suffix)
        if definite and self.definite_down:
            self.status = Status.DOWN
            self._fails = 0
            return Transition(old, Status.DOWN, "definite failure" + suffix)
        if self._fails >= self.fall:
            self.status = Status.DOWN
            self._fails = 0
            return Transition(old, Status.DOWN, f"{self.fall} checks failed" + suffix)
        return None

    def force(self, status: Status, reason: str) -> Transition | None:
        """Set the status from outside (an operator, a peer's view); counters restart."""
        old = self.status
        self._fails = self._oks = 0
        if old is status:
            return None
        self.status = status
        return Transition(old, status, reason)
