"""The one bounded wait of the integration tests.

    wait_for("a primary", lambda: primary_of(cluster), timeout=30)

Polls `predicate` until it returns something true and returns that value; an
AssertionError naming `what` after `timeout` seconds. Never waits unbounded.
Each wait that ends prints how long it took (pytest shows it for a failed test).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.1
) -> Any:
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = predicate()
        if value:
            # Shown with a failing test's output: which waits took how long before it.
            print(f"[wait_for] {what}: {time.monotonic() - start:.1f}s")
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(step)
