"""Run inside a lab host: the drill library's SQL writer for SECONDS (or until SIGTERM),
then its report as JSON on stdout. `python lab_sql_writer.py CONNINFO FIRST_ID SECONDS`; or, with
`--ids CONNINFO`, print the ids the server at CONNINFO holds in `t`; with
`--create CONNINFO`, create `t`."""

from __future__ import annotations

import json
import signal
import sys
import threading

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
    conninfo, first, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SqlWriter(conninfo, first_id=first) as writer:
        stop.wait(seconds)
    r = writer.report
    print(
        json.dumps(
            {
                "acknowledged": r.acknowledged,
                "attempted": r.attempted,
                "uncertain": r.uncertain,
                "acks_at": [a.at for a in r.acks],
            }
        )
    )


if __name__ == "__main__":
    main()
