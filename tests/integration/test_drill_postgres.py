"""`spofless drill` on PostgreSQL with automatic failover, started by `spofless up`.

etcd (3) + PostgreSQL (3, synchronous) + a read-write load balancer (2, tcp, to the
primary). The scenario kills the primary (agent and server, kill -9) under two SQL
writers (libpq multi-host, and through the load balancer): 0 acknowledged writes
lost, the system back to full redundancy (a primary and two streaming replicas), and
the drill's outage agrees within 0.5 s with an independent writer run by the test.

State-triggered faults on the same stack: a switchover in progress (its etcd key), a
load balancer marking the old primary's backend down (its admin API) and a replica
lagging more than 1 MB (status; the test freezes a replica's WAL receiver and writes
3 MB) each fire their fault once, recorded with when the drill saw the event. On a
stack of its own: run after the primary-crash test on a shared stack, it once waited
90 s for full redundancy in vain (cause not found; the stack was gone).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest
from pg_cluster import require_postgres_and_etcd
from psycopg.conninfo import make_conninfo
from stack_fixtures import SPOFLESS, StackRun, free_port_block, stack_run
from waiting import wait_for

from spofless.drill import SqlWriter
from spofless.drill.system import redundancy_problems
from spofless.security import client_params
from spofless.topology import load_topology

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: pgdrill
hosts:
  node-1: {{}}
  node-2: {{}}
  node-3: {{}}
components:
  db-rw:
    kind: load_balancer
    instances: [node-1, node-2]
    needs: [db]
    mode: tcp
    port: {rw}
    admin_port: {admin}
    routes: [{{to: db, role: primary}}]
  db:
    kind: postgres
    instances: [node-1, node-2, node-3]
    needs: [etcd]
    port: {pg}
    api_port: {api}
    synchronous: true
    ttl: 3
    loop_wait: 0.5
  etcd:
    kind: etcd
    instances: [node-1, node-2, node-3]
    min_up: majority
    port: {etcd}
    peer_port: {peer}
entry: [db-rw]
drills:
  primary-crash:
    steady_state: {{min_primaries: 1, within: 90s}}
    traffic:
      - {{sql_writes: {{to: db}}, rate: 50}}
      - {{sql_writes: {{to: db-rw}}, rate: 50}}
      - {{sql_reads: {{to: db}}, rate: 10}}
    faults:
      - {{at: 2s, kill: db, role: primary}}
      - {{when: db.role_change, stop: db-rw/1}}
    duration: 14s
    expect: {{lost_writes: 0}}
  events:
    steady_state: {{min_primaries: 1, within: 90s}}
    traffic: [{{sql_writes: {{to: db, table: events_t}}, rate: 20}}]
    faults:
      - {{when: "db.replica_lag > 1MB", pause: etcd, role: leader, for: 1s}}
      - {{at: 20s, switchover: db}}
      - {{when: db.switchover, stop: db-rw/0}}
      - {{when: db-rw.backend_down, stop: db-rw/1}}
    duration: 30s
"""


@pytest.fixture
def pg_stack() -> Iterator[StackRun]:
    require_postgres_and_etcd()
    # Not pytest's tmp_path: PostgreSQL's OS user must reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="spofless-drill-pg-"))
    base.chmod(0o755)
    taken: list[int] = []
    ports = {}
    for key, n in (("rw", 2), ("admin", 2), ("pg", 3), ("api", 3), ("etcd", 3), ("peer", 3)):
        ports[key] = free_port_block(n, taken)
        taken += range(ports[key], ports[key] + n)
    path = base / "pgdrill.yaml"
    path.write_text(TOPOLOGY.format(**ports))
    try:
        with stack_run(path, base / "state") as run:
            up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
            assert up.returncode == 0, up.stdout + up.stderr
            yield run
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(500)
def test_a_primary_crash_loses_no_acknowledged_write_and_heals(pg_stack: StackRun) -> None:
    run = pg_stack
    topology = load_topology(run.topology)
    pg = [i for i in run.status()["instances"] if i["component"] == "db"]
    independent = make_conninfo(
        host=",".join("127.0.0.1" for _ in pg),
        port=",".join(str(i["ports"]["main"]) for i in pg),
        user="postgres",
        dbname="postgres",
        connect_timeout=2,
        target_session_attrs="read-write",
        **client_params(topology, "db"),
    )
    # The test's own writer, on its own table.
    writer = SqlWriter(independent, "independent_t", first_id=1, run_bound=170)
    import psycopg

    with psycopg.connect(independent, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS independent_t (id bigint PRIMARY KEY)")
    with writer:
        out = run.cli(
            "drill",
            "-s",
            "primary-crash",
            "--format",
            "json",
            "--assert",
            "rto < 30s",
            timeout=240,
        )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    print(json.dumps(doc["summary"], indent=1))
    fault, triggered = doc["faults"]
    assert fault["applied"] and fault["action"] == "kill" and len(fault["targets"]) == 1
    # Fired by the failover that status reported, after the kill.
    assert triggered["applied"] and triggered["targets"] == ["db-rw/1"]
    assert triggered["at"] > fault["at"]
    assert doc["data"]["lost"] == 0 and doc["data"]["phantom"] == 0
    assert doc["data"]["divergent"] == {}
    assert doc["data"]["acknowledged"] > 200
    assert doc["summary"]["lost_writes"] == 0 and doc["summary"]["rpo_writes"] == 0
    assert doc["after"]["whole"] is True
    assert fault["detect"] is not None and fault["recover"] is not None
    by_stream = {w["stream"]: w for w in fault["windows"]}
    direct = by_stream["sql-0 writes to db"]
    assert direct["recovered"] and direct["outage"] > 0  # the writes did stop, and resumed
    reads = next(s for s in doc["streams"] if s["name"] == "sqlr-2 reads from db")
    assert reads["requests"] > 50 and reads["errors"] < reads["requests"] / 2
    assert by_stream["sqlr-2 reads from db"]["recovered"]
    # The drill's window agrees with a writer it does not know about.
    ours = writer.report.window(after=0.0)
    print(f"drill outage {direct['outage']:.3f}s, independent writer's {ours:.3f}s")
    assert abs(direct["outage"] - ours) < 0.5
    # Full redundancy, as status shows it: a primary and two replicas, all up.
    roles = sorted(i["role"] for i in run.status()["instances"] if i["component"] == "db")
    assert roles == ["primary", "replica", "replica"]
    # A short seeded random schedule (the test suite's generator): nothing lost either.
    out = run.cli(
        "drill", "--random", "--seed", "5", "--faults", "3", "--format", "json", timeout=240
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["plan"] == "random" and doc["seed"] == 5 and len(doc["faults"]) == 3
    print("random:", [(f["description"], f["rto"], f["recover"]) for f in doc["faults"]])
    assert all(f["applied"] for f in doc["faults"])
    assert doc["data"]["lost"] == 0 and doc["data"]["divergent"] == {}
    assert doc["after"]["whole"] is True


def _walreceiver(postmaster: int) -> psutil.Process:
    for child in psutil.Process(postmaster).children():
        if "walreceiver" in " ".join(child.cmdline()):
            return child
    raise AssertionError(f"no walreceiver under postmaster {postmaster}")


@pytest.mark.timeout(400)
def test_faults_fire_on_a_switchover_a_backend_marked_down_and_replica_lag(
    pg_stack: StackRun,
) -> None:
    run = pg_stack

    topology = load_topology(run.topology)
    problems: list[str] = []

    def whole() -> list[dict[str, Any]] | None:
        docs = run.status()["instances"]
        problems[:] = redundancy_problems(docs, topology)
        return None if problems else [i for i in docs if i["component"] == "db"]

    try:
        db = wait_for("full redundancy before the drill", whole, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {problems}") from None
    (primary,) = [i for i in db if i["role"] == "primary"]
    conninfo = make_conninfo(
        host="127.0.0.1",
        port=primary["ports"]["main"],
        user="postgres",
        dbname="postgres",
        connect_timeout=5,
        **client_params(load_topology(run.topology), "db"),
    )

    def asynchronous() -> list[dict[str, Any]] | None:
        """The replicas not chosen as synchronous standbys, once exactly one is."""
        url = f"http://127.0.0.1:{primary['ports']['api']}/cluster"
        sync = httpx.get(url, timeout=2).json()
        out = [
            i
            for i in db
            if i["role"] == "replica" and i["name"].replace("/", "-") not in sync["synchronous"]
        ]
        return out if len(out) == 1 else None

    # Just after a failover the primary may not have chosen its synchronous standby yet.
    (laggard,) = wait_for("one synchronous and one asynchronous replica", asynchronous, 60)
    argv = [SPOFLESS, "drill", str(run.topology), "-s", "events", "--format", "json"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(run.state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    frozen: psutil.Process | None = None
    try:

        def writing() -> bool:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the drill ended early ({proc.returncode}): {out}{err}")
            with psycopg.connect(conninfo, autocommit=True) as conn:
                found = conn.execute("SELECT to_regclass('events_t') IS NOT NULL").fetchone()
                if not found or not found[0]:
                    return False
                row = conn.execute("SELECT count(*) FROM events_t").fetchone()
                return bool(row and row[0] > 0)

        wait_for("the drill's writes (its steady state held)", writing, timeout=60)
        # Freeze the asynchronous replica's WAL receiver (commits wait for the other one
        # only) and write 3 MB of WAL: it falls behind by that much.
        frozen = _walreceiver(laggard["pid"])
        frozen.suspend()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lagfill (x text)")
            conn.execute(
                "INSERT INTO lagfill SELECT repeat('x', 1000) FROM generate_series(1, 3000)"
            )
        wait_for(
            f"{laggard['name']} lagging more than 1 MB in status",
            lambda: (run.instance(laggard["name"])["lag"] or 0) > 1 << 20,
            timeout=15,
        )
        time.sleep(1.0)  # the drill looks every 0.1 s
        frozen.resume()
        frozen = None
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if frozen is not None:
            frozen.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stdout + stderr
    doc = json.loads(stdout)
    faults = {f["when"]: f for f in doc["faults"]}
    print([(f["description"], f["when"], f["seen_at"], f["seen"], f["at"]) for f in doc["faults"]])
    on_lag = faults["db.replica_lag > 1MB"]
    assert on_lag["applied"] and on_lag["action"] == "pause" and on_lag["end"] is not None
    assert on_lag["seen"].startswith(f"{laggard['name']} lags ")
    assert on_lag["seen_at"] <= on_lag["at"]
    switchover = faults[None]
    assert switchover["action"] == "switchover" and "->" in switchover["note"]
    on_switch = faults["db.switchover"]
    assert on_switch["targets"] == ["db-rw/0"]
    assert on_switch["seen"] == "a switchover of db requested"
    # Seen while it was in progress: before it was over.
    assert switchover["at"] <= on_switch["seen_at"] <= on_switch["at"] < switchover["end"]
    on_backend = faults["db-rw.backend_down"]
    assert on_backend["targets"] == ["db-rw/1"] and "marked" in on_backend["seen"]
    assert on_backend["seen_at"] > switchover["at"]
    # Each fired once, and the report keeps every event it saw, with when.
    assert len(doc["faults"]) == 4
    events = {e["event"] for e in doc["events"]}
    assert {"db.switchover", "db-rw.backend_down", "db.replica_lag>1048576"} <= events
    assert doc["data"]["lost"] == 0 and doc["after"]["whole"] is True
