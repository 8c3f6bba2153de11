"""Bounded writes to PostgreSQL for `make demo`: insert ids, then count the acknowledged lost.

    python scripts/demo_writes.py FILE [--component db] [--seconds S] [--interval S]
                                       [--ready PATH]

Finds the component's members in `spofless status FILE --json` and writes as a
plain libpq client would: one multi-host connection string with
`target_session_attrs=read-write`, so libpq finds the primary, also after a
failover. Inserts increasing ids one after another for `seconds`, one every
`interval`, reconnecting after an error. Then reads the ids back from the
primary and prints how many writes were acknowledged, how many attempts failed,
the longest gap between two acknowledged writes, and how many acknowledged ids
are missing. Exit status 0 when none is. With `--ready`, it creates PATH once
it has written for a second, so a fault can be aimed at a client that is writing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from spofless.security import client_params
from spofless.topology import load_topology

SPOFLESS = str(Path(sys.executable).with_name("spofless"))
TABLE = "demo_writes"


def multi_host_dsn(file: str, component: str) -> str:
    out = subprocess.run(
        [SPOFLESS, "status", file, "--json"], capture_output=True, text=True, check=True, timeout=30
    )
    members = [i for i in json.loads(out.stdout)["instances"] if i["component"] == component]
    hosts = ",".join(m["address"].rpartition(":")[0] for m in members)
    ports = ",".join(m["address"].rpartition(":")[2] for m in members)
    # libpq moves on from a dead host after 2 s (its minimum connect_timeout); a
    # statement on a dying primary waits at most 1 s.
    auth = client_params(load_topology(file), component)  # password and TLS, from secrets
    return make_conninfo(
        f"host={hosts} port={ports} user=postgres dbname=postgres "
        "target_session_attrs=read-write connect_timeout=2 "
        "options='-c statement_timeout=1000'",
        **auth,
    )


def connect(dsn: str, deadline: float) -> psycopg.Connection[tuple[object, ...]]:
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", help="the topology file")
    parser.add_argument("--component", default="db")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--interval", type=float, default=0.015)
    parser.add_argument("--ready", type=Path, default=None, help="created once writing")
    args = parser.parse_args()

    dsn = multi_host_dsn(args.file, args.component)
    with connect(dsn, time.monotonic() + 30) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")

    acked: list[int] = []
    ack_times: list[float] = []
    failed = 0
    next_id = 1
    end = time.monotonic() + args.seconds
    conn: psycopg.Connection[tuple[object, ...]] | None = None
    while time.monotonic() < end:
        try:
            if conn is None:
                conn = psycopg.connect(dsn, autocommit=True)
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", (next_id,))
            acked.append(next_id)
            ack_times.append(time.monotonic())
            if args.ready and ack_times[-1] - ack_times[0] >= 1.0 and not args.ready.exists():
                args.ready.touch()
        except psycopg.Error:
            failed += 1
            if conn is not None:
                conn.close()
                conn = None
        next_id += 1  # an id that failed may or may not be there; it was not acknowledged
        time.sleep(args.interval)
    if conn is not None:
        conn.close()

    with connect(dsn, time.monotonic() + 30) as check:
        present = {int(str(r[0])) for r in check.execute(f"SELECT id FROM {TABLE}").fetchall()}
    lost = [i for i in acked if i not in present]
    gaps = [b - a for a, b in itertools.pairwise(ack_times)]
    window = max(gaps, default=0.0)
    print(
        f"{len(acked)} writes acknowledged, {failed} attempts failed while there was no "
        f"primary, longest pause {window:.1f} s; acknowledged writes lost: {len(lost)}"
    )
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
