"""The Python cost of one proxied HTTP request, without sockets.

    .venv/bin/python benchmarks/lb_vs_haproxy/hotpath.py [--requests 200000] [--profile]
        [--cpu-time]

Drives spofless's http protocol objects (`ClientConn`, `UpstreamConn`) over
transports that drop what they are given: a wrk-like request head in, a
13-byte 200 response back, keep-alive on both sides, two backends in round
robin. Prints microseconds per request: what the features cost in Python on
top of uvloop and the kernel, which `run.py` measures together. `--profile`
adds a cProfile table of the request path. `--cpu-time` counts the process's CPU
time instead of wall time: on a machine shared with other work, where this
process waits for a core, it is the figure that still compares.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

import uvloop

from spofless.lb import settings_from_flags
from spofless.lb._balancer import Balancer
from spofless.lb._http import ClientConn
from spofless.lb._upstream import UpstreamConn
from spofless.topology import LbOptions

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n"
)


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


async def measure(requests: int, profile: bool, clock: Any = time.perf_counter) -> float:
    settings = settings_from_flags(
        listen="127.0.0.1:0", backends=["127.0.0.1:9", "127.0.0.1:10"], options=LbOptions()
    )
    bal = Balancer(settings)
    bal.loop = asyncio.get_running_loop()
    for b in bal.backends.values():
        up = UpstreamConn(bal, b)
        up.connection_made(NullTransport())  # type: ignore[arg-type]
        b.idle.append(up)
    client = ClientConn(bal)
    client.connection_made(NullTransport())  # type: ignore[arg-type]

    def one() -> None:
        client.data_received(REQUEST)
        req = client.active
        assert req is not None and req.up is not None
        req.up.data_received(RESPONSE)

    for _ in range(2000):  # warm up
        one()
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    t0 = clock()
    for _ in range(requests):
        one()
    elapsed = clock() - t0
    if prof is not None:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--cpu-time", action="store_true", help="CPU time, not wall time")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    best = min(uvloop.run(measure(args.requests, False, clock)) for _ in range(3))
    what = "CPU time" if args.cpu_time else "wall time"
    print(f"{best:.2f} µs of Python per proxied request ({what}, best of 3 x {args.requests})")
    if args.profile:
        uvloop.run(measure(args.requests // 4, True))


if __name__ == "__main__":
    main()
