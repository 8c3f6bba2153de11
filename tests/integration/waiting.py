"""The one bounded wait of the integration tests.

    wait_for("a primary", lambda: primary_of(cluster), timeout=30)

Polls `predicate` until it returns something true and returns that value; an
AssertionError naming `what` after `timeout` seconds. Never waits unbounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(step)
