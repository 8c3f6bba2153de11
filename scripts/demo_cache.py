"""Bounded traffic on the demo app's cache for `make demo`: count failed requests and lost keys.

    python scripts/demo_cache.py HOST:PORT [--records N] [--seconds S] [--interval S]
                                           [--ready PATH]

Through a load balancer to the demo web app (spofless.demo.app with --db and
--cache): writes N records (POST /write; the app writes each through to the cache
and says `cached` when a cache replica has it: SET + WAIT 1), then creates PATH
(`--ready`: aim the fault now) and for `seconds` alternates a new write and a read
of a known record (GET /read?id=K, X-Cache: hit, miss or down), one every
`interval`. Then it reads back every record the app said was cached: one that
misses the cache is a lost key (a read the cache tier could not answer at all is
asked again, for up to 30 s). Prints requests, failures, the cache's answers and
lost keys; exit status 0 when no request failed and no key was lost.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import sys
import time
import uuid
from pathlib import Path

CHECK_BOUND = 30.0  # seconds the final check asks again while the cache does not answer


class Client:
    """One keep-alive connection (a new one after an error); every failure counted."""

    def __init__(self, address: str) -> None:
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0
        self.failures: collections.Counter[str] = collections.Counter()

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, str]:
        """(status, JSON body, X-Cache); status 0 when there was no answer."""
        self.requests += 1
        headers = {"Idempotency-Key": uuid.uuid4().hex} if body is not None else {}
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = json.loads(resp.read() or b"{}")
            if resp.status >= 500:
                self.failures[f"HTTP {resp.status}"] += 1
            return resp.status, data, resp.getheader("X-Cache") or ""
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.failures[type(exc).__name__] += 1
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return 0, {}, ""

    def write(self, value: str) -> tuple[int, bool] | None:
        status, data, _ = self.call("POST", "/write", value.encode())
        return (int(data["id"]), bool(data.get("cached"))) if status == 201 else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address", help="host:port of the web load balancer")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--ready", type=Path, default=None)
    args = parser.parse_args()
    client = Client(args.address)
    values: dict[int, str] = {}
    cached: set[int] = set()

    def write(value: str) -> None:
        done = client.write(value)
        if done is not None:
            values[done[0]] = value
            if done[1]:
                cached.add(done[0])

    for i in range(args.records):
        write(f"record {i}")
    if args.ready is not None:
        args.ready.touch()
    answers: collections.Counter[str] = collections.Counter()
    wrong = 0
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        tick = time.monotonic()
        n += 1
        if n % 2:
            write(f"record {args.records + n}")
        elif values:
            key = random.choice(list(values))
            status, data, how = client.call("GET", f"/read?id={key}")
            if status == 200:
                answers[how or "none"] += 1
                wrong += data.get("value") != values[key]
        time.sleep(max(0.0, args.interval - (time.monotonic() - tick)))

    lost: list[int] = []
    deadline = time.monotonic() + CHECK_BOUND
    for key in sorted(cached):
        while True:
            status, data, how = client.call("GET", f"/read?id={key}")
            if how != "down" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if status == 200 and data.get("value") != values[key]:
            wrong += 1
        if how != "hit":
            lost.append(key)
    failed = sum(client.failures.values())
    print(f"{client.requests} requests through {args.address}: {failed} failed")
    print("reads under the fault, the cache answered: "
          + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())))  # fmt: skip
    print(f"{len(values)} records written, {len(cached)} confirmed in the cache (WAIT 1); "
          f"after the fault {len(lost)} of those keys lost, {wrong} wrong values")  # fmt: skip
    if client.failures:
        print("failures: " + ", ".join(f"{k} x{v}" for k, v in client.failures.items()))
    if lost:
        print(f"lost keys: {lost[:10]}")
    return 1 if failed or lost or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
