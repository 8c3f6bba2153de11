"""`spofless restore --as-cluster --host H` for members on two machines, as two `up --host`
runs on one machine (each with its own state dir, the hosts on 127.0.0.1).

The cluster runs, is backed up, loses every server's data and etcd's. Then each
machine runs its part: node-2 (no member 0) marks its member clone-only, node-1
restores member 0. node-2's `up` starts first, with the only etcd member: an
empty etcd, nobody else running, the situation in which an unmarked member
bootstraps an empty cluster of its own. It waits instead; once node-1's `up`
starts the restored primary, it clones it the normal way, and both hold every
row.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_cluster import require_postgres_and_etcd
from stack_fixtures import StackRun, free_port_block, stack_run
from stack_pg import auth, backed_up_then_archived
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: shopmulti
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
components:
  db:
    kind: postgres
    instances: [node-1, node-2]
    needs: [etcd]
    port: {pg}
    api_port: {api}
    ttl: 3
    loop_wait: 0.5
    backup:
      repositories: [{{type: fs, path: {repo}}}]
  etcd:
    kind: etcd
    instances: [node-2]
    port: {etcd}
    peer_port: {peer}
entry: [db]
"""


@pytest.fixture
def two() -> Iterator[tuple[StackRun, StackRun, Path]]:
    require_postgres_and_etcd()
    if os.geteuid() != 0:
        pytest.skip("the WAL relay serves PostgreSQL running as another OS user: needs root")
    # Not pytest's tmp_path: PostgreSQL's OS user must reach the state directories.
    base = Path(tempfile.mkdtemp(prefix="spofless-backup-multi-"))
    base.chmod(0o755)
    try:
        taken: list[int] = []
        ports = {}
        for key, n in (("pg", 2), ("api", 2), ("etcd", 1), ("peer", 1)):
            ports[key] = free_port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        repo = base / "repo"
        repo.mkdir(mode=0o700)
        topology = base / "shopmulti.yaml"
        topology.write_text(TOPOLOGY.format(repo=repo, **ports))
        with stack_run(topology, base / "a") as a, stack_run(topology, base / "b") as b:
            yield a, b, topology
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _up(run: StackRun, host: str, *, wait: bool = True) -> None:
    args = ["--wait", "--timeout", "120"] if wait else []
    up = run.cli("up", "--host", host, "--allow-spof", "--detach", *args, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr


def _members(a: StackRun, b: StackRun) -> dict[str, dict[str, Any]]:
    """The members as the supervisor of each one's machine shows them (the other's status
    lists it as not run there)."""
    return {
        i["name"]: i
        for r, host in ((a, "node-1"), (b, "node-2"))
        for i in r.status()["instances"]
        if i["component"] == "db" and i["host"] == host
    }


def _settle(a: StackRun, b: StackRun, what: str, timeout: float) -> dict[str, dict[str, Any]]:
    try:
        found: dict[str, dict[str, Any]] = wait_for(what, lambda: _settled(a, b), timeout)
    except AssertionError as exc:
        logs = [
            f"--- {f}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:])
            for r in (a, b)
            for f in sorted((r.state_dir / "logs").glob("db-*.log"))
        ]
        raise AssertionError(f"{exc}: {_members(a, b)}\n" + "\n".join(logs)) from None
    return found


def _settled(a: StackRun, b: StackRun) -> dict[str, dict[str, Any]] | None:
    db = _members(a, b)
    ok = sorted(str(i["role"]) for i in db.values()) == ["primary", "replica"]
    return db if ok and all(i["dsn"] for i in db.values()) else None


def _count(dsn: str, run: StackRun) -> int | None:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5, **auth(run)) as conn:
            row = conn.execute("SELECT count(*) FROM t").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def test_restore_as_cluster_on_two_machines_the_other_clones_the_restored_primary(
    two: tuple[StackRun, StackRun, Path],
) -> None:
    a, b, topology = two
    _up(b, "node-2", wait=False)  # etcd first: node-1's agent needs it
    _up(a, "node-1")
    db = _settle(a, b, "a primary and a replica", timeout=120)
    (primary,) = [i for i in db.values() if i["role"] == "primary"]
    _, old_timeline = backed_up_then_archived(a, primary["dsn"], topology)
    for run in (a, b):
        down = run.cli("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        # Every server's data (and etcd's) is lost; the repository and the secrets are not.
        shutil.rmtree(run.state_dir / "data")

    # Each machine its part, the same command with its own --host.
    marked = b.cli("restore", "--target", "latest", "--as-cluster", "--host", "node-2")
    assert marked.returncode == 0, marked.stdout + marked.stderr
    assert "db-1 marked to clone the restored member 0" in marked.stdout
    assert not (b.state_dir / "data" / "db-1").exists()
    restored = a.cli(
        "restore", "--target", "latest", "--as-cluster", "--host", "node-1", timeout=600
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "into 1 members" in restored.stdout and (a.state_dir / "data" / "db-0").is_dir()

    # node-2 first: the only etcd member, empty, nobody else. Its member waits.
    log = b.state_dir / "logs" / "db-1.log"
    before = log.stat().st_size  # the log goes on from the first `up`

    def since() -> str:
        with log.open("rb") as f:
            f.seek(before)
            return f.read().decode(errors="replace")

    _up(b, "node-2", wait=False)
    wait_for("db/1 waiting to clone, not bootstrapping", lambda: "clone-only" in since(), 60)
    time.sleep(3)  # several agent loops: still no data directory of its own
    assert not (b.state_dir / "data" / "db-1" / "PG_VERSION").exists()
    assert "running initdb" not in since()

    _up(a, "node-1")
    db = _settle(a, b, "the restored primary and its clone", timeout=180)
    (primary,) = [i for i in db.values() if i["role"] == "primary"]
    assert primary["name"] == "db/0" and primary["timeline"] > old_timeline
    for member in db.values():
        wait_for(
            f"{member['name']} has every row",
            lambda m=member: _count(m["dsn"], a) == 150,
            timeout=60,
        )
