"""Run inside a lab host: the drill library's SQL writer for SECONDS (or until SIGTERM),
then its report as JSON on stdout. `python lab_sql_writer.py CONNINFO FIRST_ID SECONDS [READY]`
(READY: a file it makes once 10 writes are acknowledged); or, with
`--ids CONNINFO`, print the ids the server at CONNINFO holds in `t`; with
`--create CONNINFO`, create `t`; with `--writable SECONDS CONNINFO...`, ask each server
every 0.2 s whether it accepts writes until SIGTERM, and print the (monotonic time, index)
of every yes; with `--streaming CONNINFO`, print whether that server is in recovery and
streaming, and the port it streams from."""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
import threading
import time

import psycopg

from spofless.drill.sqlwrite import SqlWriter


def main() -> None:
    if sys.argv[1] == "--create":
        with psycopg.connect(sys.argv[2], autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY)")
        return
    if sys.argv[1] == "--ids":
        with psycopg.connect(sys.argv[2], autocommit=True) as conn:
            print(json.dumps([int(r[0]) for r in conn.execute("SELECT id FROM t").fetchall()]))
        return
    if sys.argv[1] == "--writable":
        print(json.dumps(writable(float(sys.argv[2]), sys.argv[3:])))
        return
    if sys.argv[1] == "--streaming":
        with psycopg.connect(sys.argv[2], autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), (SELECT status = 'streaming' AND sender_port IS NOT"
                " NULL FROM pg_stat_wal_receiver), (SELECT sender_port FROM pg_stat_wal_receiver)"
            ).fetchone()
        print(json.dumps(list(row) if row else None))
        return
    conninfo, first, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    ready = sys.argv[4] if len(sys.argv) > 4 else None  # a file made after 10 writes
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1)  # a test that finds it stuck asks where
    with SqlWriter(conninfo, first_id=first, run_bound=seconds + 10) as writer:
        end = time.monotonic() + seconds
        while ready and writer.acks_since(0) < 10 and not stop.wait(0.05):
            if time.monotonic() > end:
                break
        if ready:
            open(ready, "w").close()
        # Short waits: the kernel may deliver SIGTERM to the writer's thread, and Python runs
        # the handler only when the main thread next returns to its loop.
        while not stop.wait(0.2) and time.monotonic() < end:
            pass
    r = writer.report
    print(
        json.dumps(
            {
                "acknowledged": r.acknowledged,
                "attempted": r.attempted,
                "uncertain": r.uncertain,
                "acks_at": [a.at for a in r.acks],
                "acks": [[a.id, a.port, a.at] for a in r.acks],
            }
        )
    )


def writable(seconds: float, conninfos: list[str]) -> list[tuple[float, int]]:
    """Every (monotonic time, index) at which server `index` said it accepts writes."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        for i, conninfo in enumerate(conninfos):
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=1) as conn:
                    row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
                    at = time.monotonic()
            except psycopg.Error:
                continue
            if row and row[0]:
                seen.append((at, i))
        stop.wait(0.2)
    return seen


if __name__ == "__main__":
    main()
