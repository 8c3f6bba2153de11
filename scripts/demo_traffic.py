"""Bounded client load for `make demo`: GET / through a load balancer, count failures.

    python scripts/demo_traffic.py HOST:PORT [--requests N] [--interval S] [--deadline S]

Sends N requests one after another on a keep-alive connection (a new one after
an error), one every `interval` seconds, and stops at N or at the deadline,
whichever comes first. Prints one line: how many failed (no answer, or a 5xx)
and which demo web instance answered how many. Exit status 0 when none failed.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address", help="host:port of the load balancer")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds, at most")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")

    answered_by: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    conn: http.client.HTTPConnection | None = None
    start = time.monotonic()
    sent = 0
    while sent < args.requests and time.monotonic() - start < args.deadline:
        sent += 1
        tick = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=2.0)
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if response.status >= 500:
                failures.append(f"HTTP {response.status}")
            else:
                answered_by[json.loads(body).get("instance", "?")] += 1
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(type(exc).__name__)
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(max(0.0, args.interval - (time.monotonic() - tick)))
    took = time.monotonic() - start
    spread = ", ".join(f"{name} {n}" for name, n in sorted(answered_by.items()))
    print(f"{sent} requests through {args.address} in {took:.1f}s: {len(failures)} failed")
    print(f"answered by: {spread or 'nobody'}")
    if failures:
        kinds = collections.Counter(failures)
        print("failures: " + ", ".join(f"{k} x{n}" for k, n in kinds.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
