"""PostgreSQL across machines, for real: `spofless up --lab` of three PostgreSQL hosts in
three zones, etcd on three hosts of its own and an application host, every host its
own network namespace and address, with scram-sha-256 and TLS (verify-full) on.

A writer on the application host inserts through libpq's read-write multi-host
string; kill -9 of every process on the primary's host, then a cut of the new
primary's host: each time a replica takes over, the old primary rejoins by itself,
and at the end every acknowledged write is on the primary and on every member.
Needs root and network namespaces (skips with the reason elsewhere).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_fixtures import require_lab
from pg_cluster import require_postgres_and_etcd
from stack_fixtures import StackRun, pg_lab_stack_run, processes_using
from waiting import wait_for

from spofless.drill import check_data
from spofless.lab import Lab
from spofless.lab._netns import netns_names
from spofless.security import client_params
from spofless.topology import load_topology

pytestmark = [pytest.mark.integration, pytest.mark.lab]

TOPOLOGY = """\
name: pglab
regions:
  r1: {zones: [a, b, c]}
hosts:
  etcd1: {zone: r1/a}
  etcd2: {zone: r1/b}
  etcd3: {zone: r1/c}
  db1: {zone: r1/a}
  db2: {zone: r1/b}
  db3: {zone: r1/c}
  app: {zone: r1/a}
components:
  etcd:
    kind: etcd
    instances: [etcd1, etcd2, etcd3]
    min_up: majority
    port: 2379
    peer_port: 2400
  db:
    kind: postgres
    instances: [db1, db2, db3]
    needs: [etcd]
    port: 5432
    api_port: 8008
    synchronous: true
    allow: [10.77.0.0/16]   # the drill's writer, in the lab's control namespace
  app:
    kind: service
    instances: [app]
    needs: [db]
    port: 8000
    run: python -m spofless.demo.app --host {host} --port {port} --name app-{index}
entry: [db]
"""
WRITER = str(Path(__file__).with_name("lab_sql_writer.py"))
WRITE_FOR = 150.0  # at most: the test stops the writer (SIGTERM) once both faults healed


@pytest.fixture
def pg_lab() -> Iterator[tuple[StackRun, Lab]]:
    require_lab()
    require_postgres_and_etcd()
    with pg_lab_stack_run(TOPOLOGY, "spofless-pglab-", "pglab") as (run, lab):
        yield run, lab


def db_members(run: StackRun) -> dict[str, dict[str, Any]]:
    return {i["host"]: i for i in run.status()["instances"] if i["component"] == "db"}


def whole(run: StackRun) -> dict[str, Any] | None:
    """The primary when there is one and both others are streaming replicas."""
    m = db_members(run)
    roles = sorted(str(i["role"]) for i in m.values())
    if roles != ["primary", "replica", "replica"]:  # `replica, not streaming ...` is not
        return None
    return next(i for i in m.values() if i["role"] == "primary")


def conninfo(run: StackRun, members: list[str]) -> str:
    """A libpq string over `members` (`address:port`), with the topology's secrets."""
    auth = client_params(load_topology(run.topology), "db")
    params = {
        "host": ",".join(m.rpartition(":")[0] for m in members),
        "port": ",".join(m.rpartition(":")[2] for m in members),
        "user": "postgres",
        "dbname": "postgres",
        "connect_timeout": "2",
        "target_session_attrs": "read-write",
        **auth,
    }
    return " ".join(f"{k}={v}" for k, v in params.items())


def in_app(lab: Lab, *args: str, timeout: float = 60) -> str:
    argv = lab.argv("app", [sys.executable, WRITER, *args])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"{args[0]} on the app host failed: {out.stderr[-2000:]}"
    return out.stdout


def test_postgres_across_hosts_with_scram_and_tls(pg_lab: tuple[StackRun, Lab]) -> None:
    run, lab = pg_lab
    # One region (its loss is the single point of failure the file accepts).
    up = run.cli(
        "up", "--lab", "--detach", "--wait", "--allow-spof", "--timeout", "150", timeout=240
    )
    assert up.returncode == 0, up.stdout + up.stderr
    first = wait_for("one primary and two streaming replicas", lambda: whole(run), timeout=120)
    addresses = {h: i["address"] for h, i in db_members(run).items()}  # address:port
    dsn = conninfo(run, [addresses[h] for h in ("db1", "db2", "db3")])
    in_app(lab, "--create", dsn, timeout=30)  # from the application host, scram over TLS

    lab_pid_writer = lab.popen(
        "app",
        [sys.executable, WRITER, dsn, "1", str(WRITE_FOR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(5)
        # kill -9 of every process on the primary's host.
        lab.kill(first["host"])
        second = wait_for(
            "a new primary, the old one back as a streaming replica",
            lambda: (p := whole(run)) is not None and p["host"] != first["host"] and p,
            timeout=90,
        )
        # Cut the new primary's host off the network, then heal it.
        lab.cut(f"host:{second['host']}")
        wait_for(
            "a third primary while the second is cut off",
            lambda: any(
                i["role"] == "primary" and h != second["host"] for h, i in db_members(run).items()
            ),
            timeout=60,
        )
        lab.restore()
        wait_for("every member streaming again", lambda: whole(run), timeout=90)
        time.sleep(2)  # writes through the healed cluster too
        lab_pid_writer.terminate()
        out, err = lab_pid_writer.communicate(timeout=60)
    finally:
        if lab_pid_writer.poll() is None:
            lab_pid_writer.kill()
            lab_pid_writer.wait(10)
    assert lab_pid_writer.returncode == 0, err
    report = json.loads(out)
    primary = wait_for("the cluster whole", lambda: whole(run), timeout=60)
    time.sleep(2)  # the replicas replay the last commits
    held: dict[str, set[int]] = {}
    for host, addr in addresses.items():
        one = conninfo(run, [addr]).replace("target_session_attrs=read-write", "")
        held[host] = set(json.loads(in_app(lab, "--ids", one)))
    verdict = check_data(
        report["attempted"], report["acknowledged"], report["uncertain"], primary["host"], held
    )
    print(f"\n[lab] {verdict}")
    assert len(report["acknowledged"]) > 100, "the writer wrote through the faults"
    assert verdict.ok, str(verdict)

    # The randomized fault sequences across hosts: the drill's seeded schedule (the one
    # the suite's local randomized test draws from), members on their own hosts.
    seed = os.environ.get("SPOFLESS_FAULT_SEEDS", str(random.randrange(1, 10_000))).split(",")[0]
    print(f"[lab] randomized faults, seed {seed} (SPOFLESS_FAULT_SEEDS={seed} repeats it)")
    drill = run.cli(
        "drill", "--random", "--seed", seed, "--faults", "2", "--format", "json", timeout=600
    )
    assert drill.returncode in (0, 1), drill.stdout[-3000:] + drill.stderr[-3000:]
    result = json.loads(drill.stdout)
    assert result["data"] is not None and result["data"]["lost"] == 0, result["data"]
    assert not result["data"]["divergent"] and result["after"]["whole"], result
    wait_for("every member streaming after the drill", lambda: whole(run), timeout=90)

    down = run.cli("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert netns_names(f"spf{lab.lab_id}-") == []
    assert processes_using(run.state_dir) == []
