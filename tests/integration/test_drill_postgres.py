"""`spofless drill` on PostgreSQL with automatic failover, started by `spofless up`.

etcd (3) + PostgreSQL (3, synchronous) + a read-write load balancer (2, tcp, to the
primary). The scenario kills the primary (agent and server, kill -9) under two SQL
writers (libpq multi-host, and through the load balancer): 0 acknowledged writes
lost, the system back to full redundancy (a primary and two streaming replicas), and
the drill's outage agrees within 0.5 s with an independent writer run by the test.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import require_postgres_and_etcd
from psycopg.conninfo import make_conninfo
from stack_fixtures import StackRun, free_port_block, stack_run

from spofless.drill import SqlWriter
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
