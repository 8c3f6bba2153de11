"""Operator commands on a real cluster, through the CLI: switchover (with a writer: a
bounded pause, nothing lost), switchover to a named member, pause and resume."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import PgCluster, start_cluster
from pg_writer import Writer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with start_cluster(synchronous=True) as c:
        yield c


def spofless(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("spofless")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_switchover_pauses_writes_briefly_and_loses_none(cluster: PgCluster) -> None:
    old = cluster.wait_healthy()
    first = int(old.query("SELECT coalesce(max(id), 0) FROM t")[0][0]) + 1000
    with Writer(cluster.multihost(), first_id=first) as writer:
        cluster.wait(lambda: writer.acks_since(0) > 20, "the writer writes", 20)
        started = time.monotonic()
        out = spofless("pg", "switchover", str(cluster.file))
        assert out.returncode == 0, out.stderr
        cluster.wait(lambda: writer.acks_since(time.monotonic() - 0.5) > 5, "writes resume", 30)
        report = writer.stop()
    new = cluster.wait_healthy(bound=60)
    assert new is not old and f"from {old.name} to {new.name}" in out.stdout
    present = {int(r[0]) for r in new.query("SELECT id FROM t")}
    lost = [a.id for a in report.acks if a.id not in present]
    window = report.window(started)
    print(
        f"\n[switchover] write pause {window:.2f}s, {len(report.acks)} acknowledged, "
        f"{len(lost)} lost ({old.name} -> {new.name})"
    )
    assert lost == []
    assert report.late_acks_by(old.pg_port, new.pg_port) == []


def test_switchover_to_a_named_member(cluster: PgCluster) -> None:
    old = cluster.wait_healthy()
    sync = cluster.sync_members()
    assert sync, "synchronous mode names a synchronous replica"
    out = spofless("pg", "switchover", str(cluster.file), "--to", sync[0])
    assert out.returncode == 0, out.stderr
    new = cluster.wait_healthy(bound=60)
    assert new.name == sync[0] and new is not old


def test_switchover_to_an_unknown_member_is_refused(cluster: PgCluster) -> None:
    out = spofless("pg", "switchover", str(cluster.file), "--to", "nope")
    assert out.returncode == 2 and "no such member" in out.stderr


def test_paused_cluster_does_not_fail_over_until_resumed(cluster: PgCluster) -> None:
    old = cluster.wait_healthy()
    assert spofless("pg", "pause", str(cluster.file)).returncode == 0
    try:
        old.kill_node()
        time.sleep(8)  # well past the ttl: a failover would have happened by now
        assert cluster.primary() is None
    finally:
        assert spofless("pg", "resume", str(cluster.file)).returncode == 0
    new = cluster.wait_new_primary(old, bound=30)
    old.wait_agent_exit()
    old.start()
    assert cluster.wait_healthy(bound=60) is new


def test_client_routes_and_retries_idempotent_writes_across_a_failover(
    cluster: PgCluster,
) -> None:
    from spofless.client import Database

    old = cluster.wait_healthy()
    with Database.from_topology(cluster.file, failover_timeout=40) as db:
        db.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int)")
        assert db.execute("SELECT pg_is_in_recovery()", read_only=True) == [(True,)]
        ports = {db.execute("SELECT inet_server_port()", read_only=True)[0][0] for _ in range(4)}
        assert len(ports) == 2 and old.pg_port not in ports  # both replicas, in turn

        old.kill_node()
        started = time.monotonic()
        upsert = "INSERT INTO kv VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET v = kv.v + 0"
        db.execute(upsert, idempotent=True)  # waits out the failover, then succeeds
        print(
            f"\n[client] idempotent write succeeded {time.monotonic() - started:.2f}s "
            "after kill -9 of the primary's node"
        )
        assert db.execute("SELECT v FROM kv WHERE k = 1") == [(1,)]
    old.wait_agent_exit()
    old.start()
    cluster.wait_healthy(bound=60)
