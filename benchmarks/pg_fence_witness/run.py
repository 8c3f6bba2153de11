"""What the fence witness costs per commit: one client, single-row autocommit inserts.

Runs one local PostgreSQL (the distribution's, as the agent runs it), then alternates
rounds without and with the witness named in synchronous_standby_names, and prints the
median commit latency of each and the difference.

    .venv/bin/python benchmarks/pg_fence_witness/run.py [--rounds 5] [--commits 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from spofless.pg import PostgresServer, ServerSettings
from spofless.pg.witness import FenceWitness, witness_standby_names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _round_ms(conn: psycopg.Connection[tuple[object, ...]], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        conn.execute("INSERT INTO t VALUES (%s)", (i,))
    elapsed = time.perf_counter() - start
    conn.execute("TRUNCATE t")
    return elapsed / n * 1000


async def round_ms(conn: psycopg.Connection[tuple[object, ...]], n: int) -> float:
    # The client runs in a thread: the witness's event loop stays free, as in the agent.
    return await asyncio.to_thread(_round_ms, conn, n)


async def main(rounds: int, commits: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="spofless-bench-witness-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(ServerSettings(name="bench", data_dir=base / "d", port=free_port()))
    witness_task: asyncio.Task[None] | None = None
    try:
        await server.initdb()
        await server.start(standby=False)
        witness = FenceWitness("bench", "127.0.0.1", server.settings.port, lambda: True)
        witness_task = asyncio.create_task(witness.run())
        await asyncio.wait_for(witness.streaming.wait(), 10)
        conn = psycopg.connect(
            host="127.0.0.1", port=server.settings.port, user="postgres", autocommit=True
        )
        conn.execute("CREATE TABLE t (id int)")
        await round_ms(conn, commits)  # warm up
        without, with_ = [], []
        for _ in range(rounds):
            await server.set_synchronous_standby_names("")
            without.append(await round_ms(conn, commits))
            await server.set_synchronous_standby_names(witness_standby_names())
            with_.append(await round_ms(conn, commits))
        conn.close()
        a, b = statistics.median(without), statistics.median(with_)
        print(f"commits per round: {commits}, rounds: {rounds}")
        print(f"without witness: median {a:.3f} ms/commit ({1000 / a:.0f}/s)  {without}")
        print(f"with witness:    median {b:.3f} ms/commit ({1000 / b:.0f}/s)  {with_}")
        print(f"cost: {b - a:+.3f} ms per commit, ratio {b / a:.2f}")
    finally:
        if witness_task is not None:
            witness_task.cancel()
            with contextlib.suppress(BaseException):
                await witness_task
        await server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.commits))
