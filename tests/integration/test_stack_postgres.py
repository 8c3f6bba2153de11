"""`spofless up examples/postgres-ha.yaml`: 3 PostgreSQL agents and a 3-member etcd, for real.

`status --json` shows one primary and two replicas with a usable `dsn`; a write
through the primary's dsn is read on a replica; kill -9 of the primary's
postmaster (its pid from `status`) gives a primary again (the old one restarted
in place, or a promoted replica with the old one rejoining as a replica);
kill -9 of the primary's agent gives a new primary and the old member, its
agent restarted by the supervisor, rejoins as a replica; `down` leaves no
process and no port.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import pytest
from pg_cluster import alive
from stack_fixtures import (
    StackRun,
    listening,
    processes_using,
)
from stack_pg import auth, primary_of, settled
from waiting import wait_for

pytestmark = pytest.mark.integration


def _wait_or_show_logs(run: StackRun, what: str, predicate: Any, timeout: float) -> Any:
    """wait_for, and on timeout the tail of every agent's log, so a failure says why."""
    try:
        return wait_for(what, predicate, timeout=timeout)
    except AssertionError:
        for log in sorted((run.state_dir / "logs").glob("db-*.log")):
            tail = log.read_text(errors="replace").splitlines()[-25:]
            print(f"--- {log.name}", *tail, sep="\n")
        raise


def test_postgres_ha_up_failover_rejoin_down(pg_stack: tuple[StackRun, list[int]]) -> None:
    run, ports = pg_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr

    db = wait_for("one primary and two replicas", lambda: settled(run), timeout=60)
    for inst in db.values():
        assert inst["state"] == "up" and inst["agent_pid"] > 0 and inst["pid"] > 0
        assert inst["pid"] != inst["agent_pid"] and inst["timeline"] >= 1
    old = primary_of(db)
    postmasters = {i["pid"] for i in db.values()}

    with psycopg.connect(old["dsn"], autocommit=True, connect_timeout=5, **auth(run)) as conn:
        conn.execute("CREATE TABLE stack_t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO stack_t VALUES (1)")
    replica = next(i for i in db.values() if i["role"] == "replica")

    def replicated() -> bool:
        try:
            with psycopg.connect(
                replica["dsn"], autocommit=True, connect_timeout=5, **auth(run)
            ) as conn:
                row = conn.execute("SELECT count(*) FROM stack_t").fetchone()
                return row is not None and row[0] == 1
        except psycopg.Error:
            return False

    wait_for("the write on a replica", replicated, timeout=15)

    os.kill(old["pid"], signal.SIGKILL)

    # The agent holding the lease may restart its crashed PostgreSQL in place faster
    # than a replica could be promoted (as Patroni does); either way a primary runs on
    # a new postmaster, and a replaced old primary is back as a replica.
    def recovered() -> dict[str, Any] | None:
        now = settled(run)
        return now if now and all(i["pid"] != old["pid"] for i in now.values()) else None

    after = _wait_or_show_logs(run, "a primary and two replicas again", recovered, 60)
    new = primary_of(after)
    assert after[old["name"]]["role"] in ("primary", "replica")
    print(f"\nkill -9 of {old['name']}'s postmaster: now {new['name']} is the primary")
    postmasters |= {i["pid"] for i in after.values()}
    with psycopg.connect(new["dsn"], autocommit=True, connect_timeout=5, **auth(run)) as conn:
        conn.execute("INSERT INTO stack_t VALUES (2)")
        row = conn.execute("SELECT count(*) FROM stack_t").fetchone()
        assert row is not None and row[0] == 2  # the write before the fault survived

    # kill -9 of the primary's agent takes its PostgreSQL along (parent-death signal). The
    # supervisor restarts the agent; once the old lease has expired there is an election,
    # which a replica wins, or the restarted member itself when it still has the newest
    # WAL (it never wrote without the lease: the fence saw to that). Either way one primary
    # and two streaming replicas again, the killed agent restarted, its postmaster new.
    os.kill(new["agent_pid"], signal.SIGKILL)

    def failed_over() -> dict[str, Any] | None:
        now = settled(run)
        if now is None or now[new["name"]]["restarts"] < 1:
            return None
        return now if now[new["name"]]["pid"] != new["pid"] else None

    final = _wait_or_show_logs(
        run, "a primary and two replicas after the agent kill", failed_over, 120
    )
    postmasters |= {i["pid"] for i in final.values()}
    with psycopg.connect(
        primary_of(final)["dsn"], autocommit=True, connect_timeout=5, **auth(run)
    ) as conn:
        row = conn.execute("SELECT count(*) FROM stack_t").fetchone()
        assert row is not None and row[0] == 2  # synchronous: no acknowledged write lost

    down = run.cli("down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_using(run.state_dir) == []
    assert listening(ports) == []
    for pid in postmasters:
        assert not alive(pid), f"postmaster {pid} outlived `down`"
