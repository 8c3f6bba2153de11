"""A PostgreSQL stack for tests: `spofless up` of examples/postgres-ha.yaml on free ports.

    def test_x(pg_stack: tuple[StackRun, list[int]]) -> None: ...

3 PostgreSQL agents and a 3-member etcd; the data directories under a folder the
`postgres` OS user can reach (not pytest's tmp_path); torn down whatever happens.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import require_postgres_and_etcd
from stack_fixtures import REPO, StackRun, free_port_block, stack_run

from spofless.security import client_params
from spofless.topology import load_topology

EXAMPLE = REPO / "examples" / "postgres-ha.yaml"
BASES = {"pg": 25432, "api": 28008, "etcd": 23790, "peer": 23800}


def postgres_topology(dest: Path) -> tuple[Path, list[int]]:
    """The example with every base port replaced by a free block of 3; all its ports."""
    text = EXAMPLE.read_text()
    taken: list[int] = []
    for old in BASES.values():
        new = free_port_block(3, taken)
        taken += range(new, new + 3)
        text, count = re.subn(rf"\b{old}\b", str(new), text)
        assert count >= 1, f"{old} not in {EXAMPLE}"
    dest.write_text(text)
    return dest, taken


@pytest.fixture
def pg_stack() -> Iterator[tuple[StackRun, list[int]]]:
    require_postgres_and_etcd()
    # Not pytest's tmp_path: PostgreSQL's OS user must reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="spofless-stack-pg-"))
    base.chmod(0o755)
    try:
        topology, ports = postgres_topology(base / "postgres-ha.yaml")
        with stack_run(topology, base / "state") as run:
            yield run, ports
    finally:
        shutil.rmtree(base, ignore_errors=True)


def auth(run: StackRun) -> dict[str, str]:
    """The password and CA a client of `db` needs (the stack made them at `up`)."""
    return client_params(load_topology(run.topology), "db")


def members(run: StackRun) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in run.status()["instances"] if i["component"] == "db"}


def roles(run: StackRun) -> dict[str, str | None]:
    return {name: i["role"] for name, i in members(run).items()}


def settled(run: StackRun) -> dict[str, dict[str, Any]] | None:
    """The members once there is one primary and two replicas, each with a dsn."""
    db = members(run)
    found = sorted(str(i["role"]) for i in db.values())
    ok = found == ["primary", "replica", "replica"] and all(i["dsn"] for i in db.values())
    return db if ok else None


def primary_of(db: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (primary,) = [i for i in db.values() if i["role"] == "primary"]
    return primary


def backed_up_then_archived(run: StackRun, dsn: str, topology: Path) -> tuple[str, int]:
    """Rows 1-100 in a new table `t`, a full backup (`spofless backup --full`), rows
    101-150 after it, and their WAL segment switched and archived: what a restore to
    the latest point must bring back. Returns the segment's name and the timeline."""
    import subprocess
    import sys

    import psycopg
    from waiting import wait_for

    with psycopg.connect(dsn, autocommit=True, **auth(run)) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
        took = subprocess.run(
            [sys.executable, "-m", "spofless", "backup", str(topology), "--full"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert took.returncode == 0, took.stdout + took.stderr
        conn.execute("INSERT INTO t SELECT generate_series(101, 150)")
        row = conn.execute(
            "SELECT pg_walfile_name(pg_switch_wal()), timeline_id FROM pg_control_checkpoint()"
        ).fetchone()
        assert row is not None
        name, timeline = str(row[0]), int(row[1])

        def archived() -> bool:
            r = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return r is not None and r[0] is not None and r[0] >= name

        wait_for(f"{name} archived", archived, timeout=60)
    return name, timeline
