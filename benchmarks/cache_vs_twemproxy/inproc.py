"""The redis mode's Python cost per command, in one process, without sockets.

Usage (from the repository root):

    .venv/bin/python benchmarks/cache_vs_twemproxy/inproc.py [--rounds 2000] [--pipeline 16]

The load balancer's protocol objects (`RedisClient`, the shared `RedisUpstream`s)
are fed what redis-benchmark and Redis would send (`-c` clients, SET and GET of
random keys over 100,000, `--pipeline` commands per client read) through fake
transports; a fake Redis answers each write whole. Printed: the CPU time per
command spent in the proxy's code (the fake Redis's work is not counted). No
system calls and hardly any event loop work: this is the part that `run.py`'s
CPU per request has on top of them (within about 15% run to run on the shared
machine), and what py-spy sees of it. py-spy is not a dependency of the
project; to profile:

    .venv/bin/pip install py-spy
    .venv/bin/py-spy record -- .venv/bin/python benchmarks/cache_vs_twemproxy/inproc.py
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

import hiredis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.unit.lb_fakes import FakeTransport

from spofless.lb import _redis
from spofless.lb._balancer import Balancer
from spofless.lb._settings import LbSettings


def settings() -> LbSettings:
    route = {"fail_open": True, "exclusive": True}
    return LbSettings.model_validate(
        {
            "instance": "lb/0",
            "mode": "redis",
            "routes": [
                {"name": s, "shard": s, **route,
                 "backends": [{"name": f"{s}/0", "host": "127.0.0.1", "port": 1 + i}]}
                for i, s in enumerate(("shard-a", "shard-b"))
            ],
        }
    )  # fmt: skip


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class FakeRedis:
    """Answers what a transport was sent: +OK to SET, a 3-byte value to GET."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()

    def answer(self, data: bytes) -> bytes:
        self.reader.feed(data)
        out = []
        while (args := self.reader.gets()) is not False:
            out.append(b"+OK\r\n" if args[0] == b"SET" else b"$3\r\nxxx\r\n")
        return b"".join(out)


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()

    async def opened(self: _redis.RedisUpstream) -> None:
        self.connection_made(FakeTransport())  # type: ignore[arg-type]

    _redis.RedisUpstream._open = opened  # type: ignore[method-assign]
    bal = Balancer(settings())
    bal.start(loop)
    clients = []
    for _ in range(args.clients):
        c = _redis.RedisClient(bal)
        c.connection_made(FakeTransport())  # type: ignore[arg-type]
        clients.append(c)
    rng = random.Random(1)
    value = b"x" * 3
    # Each client's reads, made up front (not measured).
    chunks = [
        [
            b"".join(
                cmd(b"SET", b"key:%012d" % rng.randrange(100000), value)
                if test == "set"
                else cmd(b"GET", b"key:%012d" % rng.randrange(100000))
                for _ in range(args.pipeline)
            )
            for test in ("set", "get")
        ]
        for _ in range(args.clients * 64)  # about as many keys as redis-benchmark -r 100000
    ]
    redis: dict[str, FakeRedis] = {}
    spent = 0.0
    commands = 0
    clock = time.process_time
    for r in range(args.rounds):
        test = r % 2
        t0 = clock()
        for i, c in enumerate(clients):
            c.data_received(chunks[(r * len(clients) + i) % len(chunks)][test])
        await asyncio.sleep(0)  # the upstreams write at the end of the turn
        spent += clock() - t0
        commands += len(clients) * args.pipeline
        for name, up in list(bal.redis_shards.shared.items()):  # type: ignore[attr-defined]
            t = up.transport
            assert isinstance(t, FakeTransport)
            written = bytes(t.out)
            t.out.clear()
            reply = redis.setdefault(name, FakeRedis()).answer(written)
            t0 = clock()
            # Redis's replies come in reads of up to 64 KiB.
            for start in range(0, len(reply), 65536):
                up.data_received(reply[start : start + 65536])
            spent += clock() - t0
        for c in clients:
            t = c.transport
            assert isinstance(t, FakeTransport)
            got = t.out.count(b"+OK\r\n" if test == 0 else b"$3\r\nxxx\r\n")
            assert got == args.pipeline, f"{got} replies of {args.pipeline}"
            t.out.clear()
    print(
        f"{args.clients} clients, -P {args.pipeline}, {commands:,} commands: "
        f"{spent / commands * 1e6:.2f} us of CPU per command in the proxy's code"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--pipeline", type=int, default=16)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
