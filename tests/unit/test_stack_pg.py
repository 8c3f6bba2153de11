"""The stack's view of PostgreSQL instances: roles and details from the agent, the table."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.console import Console

from spofless.pg import postmaster_pid
from spofless.stack._pg import describe, format_lag
from spofless.stack._status import PG_KEYS, status_table


def status(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "db-0",
        "running": True,
        "role": "replica",
        "leader": False,
        "timeline": 2,
        "wal_position": 0x3000148,
        "lag": 0,
        "streaming": True,
        "dsn": "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
    }
    base.update(kw)
    return base


def test_primary_only_with_the_lease() -> None:
    assert describe(status(role="primary", leader=True)).role == "primary"
    assert describe(status(role="primary", leader=False)).role == "demoting"
    assert describe(status()).role == "replica"
    assert describe(status(running=False)).role is None


def test_a_replica_that_does_not_stream_or_cannot_rejoin_says_so() -> None:
    d = describe(status(streaming=False, not_streaming_for=12.4, reason="replica of db-1, ..."))
    assert d.role == "replica, not streaming 12s" and d.reason == "replica of db-1, ..."
    assert describe(status(streaming=False)).role == "replica, not streaming"
    failed = describe(status(state="failed", reason="kept out: 0/5-0/6 on timeline 5"))
    assert failed.role == "failed" and failed.reason is not None
    assert describe(status(running=False, state="rewinding")).role == "rewinding"


def test_details_keep_what_the_agent_says_and_drop_what_is_malformed() -> None:
    d = describe(status(timeline="2", lag=True, dsn=5))
    assert (d.timeline, d.lag, d.dsn) == (None, None, None)
    d = describe(status())
    assert d.to_json()["dsn"] == "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    assert d.wal_position == 0x3000148


def test_postmaster_pid_is_none_for_a_missing_or_stale_or_foreign_pid(tmp_path: Path) -> None:
    assert postmaster_pid(tmp_path) is None
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n/data\n")
    assert postmaster_pid(tmp_path) is None  # this is python, not postgres
    (tmp_path / "postmaster.pid").write_text("garbage\n")
    assert postmaster_pid(tmp_path) is None


def test_lag_is_human() -> None:
    assert [format_lag(x) for x in (None, 0, 2048, 3 << 20)] == ["-", "0 B", "2.0 kB", "3.0 MB"]


def test_table_shows_timeline_wal_and_lag_for_postgres_only() -> None:
    common = {
        "host": "a",
        "ports": {"main": 5432},
        "address": "127.0.0.1:5432",
        "state": "up",
        "health": "healthy",
        "uptime": 3.0,
        "restarts": 0,
        "message": None,
        "last_exit": None,
    }
    pg = {**common, **PG_KEYS, "component": "db", "index": 0, "pid": 11, "role": "primary"}
    pg.update(agent_pid=10, timeline=2, wal_position=0x3000148, lag=0)
    etcd = {**common, "component": "etcd", "index": 0, "pid": 12, "role": "leader"}
    out = io.StringIO()
    Console(file=out, width=200).print(status_table({"instances": [pg, etcd]}))
    text = out.getvalue()
    assert "TL" in text and "WAL" in text and "LAG" in text
    db_line = next(line for line in text.splitlines() if line.startswith("db/0"))
    assert "11 (agent 10)" in db_line and "0/3000148" in db_line and "primary" in db_line
