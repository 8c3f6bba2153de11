"""`spofless up` with `backup:`: every member archives through the agent's WAL relay
(PostgreSQL as `postgres` reaches neither the interpreter, nor the key, nor the
repository), a scheduler beside each member takes the scheduled backup from a
replica and runs the scheduled restore drills, and `status`, the agents' /metrics
and the drill history show them, a failed drill loudly.

The schedules have a seconds field, so nothing waits for a cron minute."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pg_cluster import require_postgres_and_etcd
from stack_fixtures import StackRun, stack_run
from stack_pg import auth, backed_up_then_archived, postgres_topology, primary_of, settled
from waiting import wait_for

from spofless.backup import backup_config
from spofless.topology import load_topology

pytestmark = pytest.mark.integration


@pytest.fixture
def backup_stack() -> Iterator[tuple[StackRun, Path]]:
    require_postgres_and_etcd()
    if os.geteuid() != 0:
        pytest.skip("the WAL relay serves PostgreSQL running as another OS user: needs root")
    base = Path(tempfile.mkdtemp(prefix="spofless-stack-backup-"))
    base.chmod(0o755)
    try:
        topology, _ = postgres_topology(base / "shop.yaml")
        key = base / "backup.key"
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
        repo = base / "repo"
        repo.mkdir(mode=0o700)
        text = topology.read_text().replace(
            "    loop_wait: 0.5\n",
            "    loop_wait: 0.5\n"
            "    backup:\n"
            f"      repositories: [{{type: fs, path: {repo}}}]\n"
            f"      encryption: {{key_file: {key}}}\n"
            "      schedule: {incremental: '*/15 * * * * *', drill: '*/30 * * * * *'}\n",
            1,
        )
        topology.write_text(text)
        with stack_run(topology, base / "state") as run:
            yield run, topology
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _schedulers(run: StackRun) -> list[dict[str, Any]]:
    return [i for i in run.status()["instances"] if i["component"] == "db-backup"]


def test_up_archives_through_the_relay_backs_up_and_drills_on_schedule(
    backup_stack: tuple[StackRun, Path],
) -> None:
    run, topology = backup_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    db = wait_for("one primary and two replicas", lambda: settled(run), timeout=90)
    assert len(_schedulers(run)) == 3

    # Archiving through the relay: a switched segment reaches the repository.
    primary = primary_of(db)
    with psycopg.connect(primary["dsn"], autocommit=True, **auth(run)) as conn:
        conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        name = str(row[0])

        def archived() -> bool:
            r = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return r is not None and r[0] is not None and r[0] >= name

        wait_for(f"{name} archived", archived, timeout=60)
    store = backup_config(load_topology(topology)).stores[0]
    assert name in store.wal_names()

    # The scheduler beside a replica took the backup; status shows it and its age.
    def noted() -> list[str] | None:
        notes = [str(i.get("backup")) for i in _schedulers(run)]
        return notes if all("last backup" in n for n in notes) else None

    notes = wait_for("a scheduled backup shown in status", noted, timeout=150)
    assert all("ago" in n and "STALE" not in n for n in notes), notes
    # From a replica (the first backup may copy from the primary while the replicas
    # were still being cloned; the next one is a replica's).
    replicas = {i["name"] for i in db.values() if i["role"] == "replica"}
    try:
        wait_for(
            "a backup copied from a replica",
            lambda: any(m.source in replicas for m in store.manifests()),
            timeout=150,
        )
    except AssertionError as exc:  # what the schedulers say, to tell why
        seen = [(m.label, m.source) for m in store.manifests()]
        raise AssertionError(f"{exc}; backups {seen}; schedulers {noted()}") from None
    manifests = store.manifests()
    table = run.cli("status")
    assert "last backup" in table.stdout, table.stdout

    listing = subprocess.run(
        [sys.executable, "-m", "spofless", "backup", "list", str(topology)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0 and manifests[0].label in listing.stdout
    _drills_on_schedule(run, topology)


def _drill_of(run: StackRun) -> dict[str, Any] | None:
    drills = [i.get("restore_drill") for i in _schedulers(run)]
    return next((d for d in drills if d), None)


def _metrics(topology: Path) -> str:
    comp = load_topology(topology).components["db"]
    api_port = getattr(comp, "api_port", None)
    assert api_port is not None
    return httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=10).text


def _drill_history(run: StackRun, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["drill", "history", str(run.topology), "--state-dir", str(run.state_dir), *args]
    return subprocess.run(
        [sys.executable, "-m", "spofless", *argv], capture_output=True, text=True, timeout=60
    )


def _drills_on_schedule(run: StackRun, topology: Path) -> None:
    """The scheduled restore drill: in status, in the agents' /metrics, in the drill
    history; one that fails (a damaged object) is loud, and the next good one clears it."""
    first = wait_for("a scheduled restore drill", lambda: _drill_of(run), timeout=180)
    assert first["ok"] and first["rto"] > 0, first
    # Its RPO was read from the primary's WAL (through TLS, with the superuser's password).
    records = sorted((run.state_dir / "drills" / "restore").glob("*.json"))
    record = json.loads(records[-1].read_text())
    assert record["lost_commits"] is not None and record["rpo"] is not None, record
    assert any("last restore drill" in str(i.get("backup")) for i in _schedulers(run))
    metrics = _metrics(topology)
    assert 'spofless_backup_restore_drill_failed{component="db"} 0' in metrics, metrics
    assert 'spofless_backup_restore_drill_rto_seconds{component="db"}' in metrics
    assert 'spofless_backup_restore_drill_phase_seconds{component="db",phase="replay"}' in (metrics)
    history = _drill_history(run, "--json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert any(r["plan"] == "restore db" and r["ok"] for r in rows), rows

    # Damage an object every later backup still refers to: the next drill fails, loudly.
    store = backup_config(load_topology(topology)).stores[0]
    newest = store.manifests()[-1]
    entry = next(
        f for f in newest.files if f.parts and f.parts[0].size > 8192 and f.path.startswith("base/")
    )
    key = store.part_key(entry.parts[0].ref, entry.path, 0)
    path = Path(store.repo.root) / key  # type: ignore[attr-defined]
    original = path.read_bytes()
    path.write_bytes(original[:-64] + bytes(64))
    try:
        failed = wait_for(
            "a failed restore drill",
            lambda: (d := _drill_of(run)) is not None and not d["ok"] and d,
            timeout=180,
        )
        assert key in str(failed["error"]), failed
        assert any("RESTORE DRILL FAILED" in str(i.get("backup")) for i in _schedulers(run))
        assert 'spofless_backup_restore_drill_failed{component="db"} 1' in _metrics(topology)
        table = _drill_history(run)
        assert "restore db" in table.stdout and "no" in table.stdout, table.stdout
    finally:
        path.write_bytes(original)
    # Repaired: the next drill restores again, by itself.
    wait_for(
        "a good restore drill after the repair",
        lambda: (d := _drill_of(run)) is not None and d["ok"] and d["at"] > failed["at"],
        timeout=180,
    )
    assert 'spofless_backup_restore_drill_failed{component="db"} 0' in _metrics(topology)


def _count(dsn: str, run: StackRun) -> int:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5, **auth(run)) as conn:
        row = conn.execute("SELECT count(*) FROM t").fetchone()
        assert row is not None
        return int(row[0])


def test_every_member_lost_restore_as_a_new_cluster_then_up(
    backup_stack: tuple[StackRun, Path],
) -> None:
    run, topology = backup_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    db = wait_for("one primary and two replicas", lambda: settled(run), timeout=90)
    primary = primary_of(db)
    _, old_timeline = backed_up_then_archived(run, primary["dsn"], topology)
    down = run.cli("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    # Every server's data (and etcd's) is lost; the repository and the secrets are not.
    shutil.rmtree(run.state_dir / "data")

    restored = run.cli("restore", "--target", "latest", "--as-cluster", timeout=600)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "as a new cluster of db" in restored.stdout
    # The new timeline's history is archived: later restores can follow it.
    found = re.search(r"\(timeline (\d+)\)", restored.stdout)
    assert found is not None and int(found[1]) > old_timeline
    store = backup_config(load_topology(topology)).stores[0]
    assert f"{int(found[1]):08X}.history" in store.wal_names()
    # Again: refused while the members' directories exist, nothing changed.
    again = run.cli("restore", "--target", "latest", "--as-cluster", timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr

    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    db = wait_for("the new cluster: a primary and two replicas", lambda: settled(run), timeout=120)
    primary = primary_of(db)
    assert primary["timeline"] > old_timeline
    assert _count(primary["dsn"], run) == 150
    for member in db.values():
        wait_for(f"{member['name']} has every row", lambda m=member: _count(m["dsn"], run) == 150)


def test_up_refuses_a_missing_backup_key_before_starting_anything() -> None:
    require_postgres_and_etcd()
    # Not pytest's tmp_path: PostgreSQL's OS user must reach the state directory.
    tmp_path = Path(tempfile.mkdtemp(prefix="spofless-stack-backup-"))
    tmp_path.chmod(0o755)
    try:
        _refuses_a_missing_key(tmp_path)
    finally:
        if (tmp_path / "state").exists():  # started after all (the failure): stop it
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "spofless",
                    "down",
                    str(tmp_path / "t.yaml"),
                    "--state-dir",
                    str(tmp_path / "state"),
                ],
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(tmp_path, ignore_errors=True)


def _refuses_a_missing_key(tmp_path: Path) -> None:
    from test_stack_bad_input import assert_nothing_started
    from test_stack_bad_input import postgres_topology as small_topology

    topology, ports = small_topology(tmp_path / "t.yaml")
    missing = tmp_path / "no-such.key"
    topology.write_text(
        topology.read_text().replace(
            "needs: [etcd]}",
            f"needs: [etcd], backup: {{repositories: [{{type: fs, path: {tmp_path}/repo}}], "
            f"encryption: {{key_file: {missing}}}}}}}",
        )
    )
    state = tmp_path / "state"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "spofless",
            "up",
            str(topology),
            "--detach",
            "--allow-spof",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"cannot read key file {missing}" in out.stderr and "Traceback" not in out.stderr
    assert_nothing_started(tmp_path, ports)
