"""The benchmark's client, run inside a lab host (`spofless lab exec FILE HOST -- ...`).

client.py --create CONNINFO          create table t
client.py --latency CONNINFO N       N single-row commits; their latencies (ms), JSON
client.py --write CONNINFO SECONDS [READY [FIRST_ID [STOP]]]
                                     the drill library's writer for at most SECONDS (until
                                     the file STOP exists); its report, JSON
client.py --ids CONNINFO             the ids the server holds in t, JSON
client.py --streaming CONNINFO       whether the server's WAL receiver streams, JSON

benchmarks/region_drill runs it too.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psycopg

from spofless.drill.sqlwrite import SqlWriter


def main() -> None:
    what, conninfo = sys.argv[1], sys.argv[2]
    if what == "--create":
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY)")
    elif what == "--latency":
        out = []
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lat (id bigint PRIMARY KEY)")
            for i in range(int(sys.argv[3])):
                start = time.perf_counter()
                conn.execute("INSERT INTO lat (id) VALUES (%s)", (i,))
                out.append((time.perf_counter() - start) * 1000)
            conn.execute("DROP TABLE lat")
        print(json.dumps(out))
    elif what == "--write":
        ready = sys.argv[4] if len(sys.argv) > 4 else None
        first_id = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        stop = Path(sys.argv[6]) if len(sys.argv) > 6 else None
        seconds = float(sys.argv[3])
        with SqlWriter(conninfo, first_id=first_id, run_bound=seconds + 10) as writer:
            end = time.monotonic() + seconds
            while ready and writer.acks_since(0) < 10 and time.monotonic() < end:
                time.sleep(0.05)
            if ready:
                open(ready, "w").close()  # 10 writes acknowledged: the fault may come
            while time.monotonic() < end and not (stop and stop.exists()):
                time.sleep(0.1)
        r = writer.report
        # Wall-clock times: the benchmark compares them with the time of its cut.
        offset = time.time() - time.monotonic()
        print(
            json.dumps(
                {
                    "acknowledged": r.acknowledged,
                    "attempted": r.attempted,
                    "uncertain": r.uncertain,
                    "acks_at": [a.at + offset for a in r.acks],
                    "acks": [[a.id, a.port, a.at + offset] for a in r.acks],
                }
            )
        )
    elif what == "--ids":
        with psycopg.connect(conninfo, autocommit=True) as conn:
            print(json.dumps([int(r[0]) for r in conn.execute("SELECT id FROM t").fetchall()]))
    elif what == "--streaming":
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            print(json.dumps(row is not None and row[0] == "streaming"))
    else:
        sys.exit(f"unknown {what}")


if __name__ == "__main__":
    main()
