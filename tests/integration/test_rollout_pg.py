"""`spofless rollout --component db` on a real PostgreSQL stack, under a libpq writer.

Replicas first, each streaming again before the next, then a switchover, then the
old primary; no acknowledged write is lost, the switchover's duration is reported,
and every member is back doing its job (one primary, two streaming replicas).
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from stack_fixtures import StackRun
from stack_pg import auth, primary_of, settled
from waiting import wait_for

from spofless.drill import check_data
from spofless.drill.sqlwrite import SqlWriter

pytestmark = pytest.mark.integration


def _conninfo(run: StackRun) -> str:
    db = settled(run)
    assert db is not None
    a = auth(run)
    ports = ",".join(str(i["ports"]["main"]) for i in sorted(db.values(), key=lambda i: i["name"]))
    hosts = ",".join("127.0.0.1" for _ in db)
    extra = " ".join(f"{k}={v}" for k, v in a.items())
    return (
        f"host={hosts} port={ports} user=postgres dbname=postgres "
        f"target_session_attrs=read-write connect_timeout=2 {extra}"
    )


def test_rolling_restart_of_postgres_loses_no_acknowledged_write(
    pg_stack: tuple[StackRun, list[int]],
) -> None:
    run, _ = pg_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    db = wait_for("one primary and two replicas", lambda: settled(run), timeout=60)
    old = primary_of(db)
    conninfo = _conninfo(run)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY)")

    plan = run.cli("rollout", "--component", "db", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    lines = plan.stdout.splitlines()
    assert "switch over" in lines[2] and old["name"] in lines[3], plan.stdout

    with SqlWriter(conninfo) as writer:
        wait_for("writes flow", lambda: writer.acks_since(0) > 20, 30)
        done = run.cli("rollout", "--component", "db", "--json", timeout=600)
        time.sleep(1.0)
        report = writer.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [s["action"] for s in steps] == ["replace", "replace", "switchover", "replace"]
    assert steps[-1]["instance"] == old["name"] and steps[2]["seconds"] > 0
    assert all(s["outcome"] in ("replaced", "switched over") for s in steps)

    db = wait_for("the cluster whole again", lambda: settled(run), timeout=90)
    assert primary_of(db)["name"] != old["name"]
    time.sleep(2)  # the replicas replay the last commits
    held: dict[str, set[int]] = {}
    for name, inst in db.items():
        with psycopg.connect(inst["dsn"], autocommit=True, connect_timeout=5, **auth(run)) as c:
            held[name] = {row[0] for row in c.execute("SELECT id FROM t").fetchall()}
    verdict = check_data(
        report.attempted, report.acknowledged, report.uncertain, primary_of(db)["name"], held
    )
    assert len(report.acknowledged) > 50, "the writer wrote through the rollout"
    assert verdict.ok, str(verdict)
