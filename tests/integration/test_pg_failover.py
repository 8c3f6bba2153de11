"""Faults on the primary's node with real PostgreSQL, a real 3-member etcd, agents as processes.

For each fault (kill -9 of the node, of the postmaster alone, of the agent
alone; SIGSTOP of the node past the ttl, then SIGCONT), a plain libpq
multi-host client (`target_session_attrs=read-write`) inserts unique
increasing ids every 10-20 ms. Afterwards:

- writes resumed (the window is printed: run with -s to see it);
- no write was acknowledged by the old primary after the new one acknowledged one;
- synchronous mode: every acknowledged id is on the new primary (zero lost);
- the old primary rejoined as a replica (the killed agent is restarted, as the
  stack runner would);
- SIGSTOP: after it wakes, the old primary never acknowledges a write.

Each mode's cluster is started once and the faults run one after another on it;
every test starts from, and returns to, one primary with two streaming replicas.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from pg_cluster import Node, PgCluster, start_cluster
from pg_writer import Writer, WriterReport

pytestmark = pytest.mark.integration

TTL = 3.0  # the topology's default lease ttl
FAULTS = ["kill-node", "kill-postmaster", "kill-agent", "stop-node"]


@pytest.fixture(scope="module", params=[True, False], ids=["sync", "async"])
def cluster(request: pytest.FixtureRequest) -> Iterator[PgCluster]:
    with start_cluster(synchronous=request.param) as c:
        yield c


def _first_id(cluster: PgCluster, primary: Node) -> int:
    return int(primary.query("SELECT coalesce(max(id), 0) FROM t")[0][0]) + 1000


class QueuedWrite:
    """One INSERT sent on a connection opened before the fault, answered (or not) later."""

    def __init__(self, node: Node) -> None:
        self.conn = psycopg.connect(node.conninfo(), autocommit=True)
        self.result: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def send(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self.conn.execute("INSERT INTO t (id) VALUES (%s)", (-(10**12),))
            self.result.append("the write queued during the freeze was acknowledged")
        except psycopg.Error:
            pass  # the old primary was stopped: not acknowledged, as it must be

    def outcome(self, bound: float = 15.0) -> list[str]:
        self.thread.join(bound)
        if self.thread.is_alive():  # still waiting: not acknowledged; stop waiting
            with contextlib.suppress(Exception):
                self.conn.close()
        return self.result


def _probe_writes(node: Node, seconds: float) -> list[str]:
    """Try to write directly on `node` for `seconds`; the writes it acknowledged."""
    accepted: list[str] = []
    deadline = time.monotonic() + seconds
    probe = Writer(node.conninfo(connect_timeout=1), table="t", first_id=10**12)
    with probe:
        while time.monotonic() < deadline:
            time.sleep(0.05)
    accepted.extend(f"id {a.id} at +{a.at - deadline + seconds:.2f}s" for a in probe.report.acks)
    return accepted


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_on_primary(cluster: PgCluster, fault: str) -> None:
    old = cluster.wait_healthy()
    mode = "sync" if cluster.synchronous else "async"
    late_on_old: list[str] = []
    with Writer(cluster.multihost(), first_id=_first_id(cluster, old)) as writer:
        cluster.wait(lambda: writer.acks_since(0) > 20, "the writer writes", 20)
        fault_at = time.monotonic()
        print(
            f"\n[{mode} {fault}] fault on {old.name} at {time.strftime('%H:%M:%S')}"
            f".{int(time.time() * 1000) % 1000:03d}"
        )
        if fault == "kill-node":
            old.kill_node()
        elif fault == "kill-postmaster":
            old.signal_postgres(signal.SIGKILL)
        elif fault == "kill-agent":
            old.signal_agent(signal.SIGKILL)
        else:
            postmaster = old.postmaster_pid()
            assert postmaster is not None
            # A client connected before the freeze sends a write while the node is frozen:
            # the kernel queues it, and the old primary runs it the instant it wakes.
            queued = QueuedWrite(old)
            old.stop_node()
            queued.send()
            # Frozen past the ttl: a replica takes over meanwhile.
            cluster.wait_new_primary(old, bound=30)
            time.sleep(max(0.0, fault_at + TTL + 2 - time.monotonic()))
            old.cont_node(postmaster)
            late_on_old = _probe_writes(old, 3.0)
            late_on_old += queued.outcome()
        cluster.wait(lambda: writer.acks_since(fault_at) > 50, "writes resume", 40)
        report = writer.stop()

    if fault in ("kill-node", "kill-agent"):
        old.wait_agent_exit()
        old.start()  # as the stack runner would: the old primary rejoins as a replica
    new = cluster.wait_healthy(bound=60)
    if fault != "kill-postmaster":
        assert new is not old, f"{old.name} still the primary after {fault}"
    _check(cluster, report, old, new, fault_at, f"{mode} {fault}")
    assert late_on_old == [], f"the old primary acknowledged writes after waking: {late_on_old}"


def _check(
    cluster: PgCluster, report: WriterReport, old: Node, new: Node, fault_at: float, what: str
) -> None:
    present = {int(r[0]) for r in new.query("SELECT id FROM t")}
    lost = [a.id for a in report.acks if a.id not in present]
    late = report.late_acks_by(old.pg_port, new.pg_port)
    window = report.window(fault_at)
    print(
        f"\n[{what}] window {window:.2f}s, {len(report.acks)} acknowledged, "
        f"{len(lost)} lost, {report.failed} failed attempts, "
        f"{len(late)} acknowledged by the old primary after the new one "
        f"({old.name} -> {new.name})"
    )
    assert late == [], f"{what}: acknowledged by the old primary after failover: {late[:5]}"
    if cluster.synchronous:
        assert lost == [], f"{what}: {len(lost)} acknowledged writes lost: {lost[:10]}"
    # Every id acknowledged by the new primary is there, whatever the mode.
    assert not [a.id for a in report.acks if a.port == new.pg_port and a.id not in present]
    if old is not new:  # the old primary is a read-only replica now
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            old.query("INSERT INTO t (id) VALUES (-1)")


def test_leader_whose_postgres_refuses_its_agent_gives_the_lease_up(cluster: PgCluster) -> None:
    """The primary's PostgreSQL runs but refuses every connection (a pg_hba.conf that
    rejects all, reloaded): its agent must not keep the lease of a server it cannot
    serve. It stops it and releases; a replica takes over; the old one rejoins (its
    agent rewrites pg_hba.conf before the next start)."""
    old = cluster.wait_healthy()
    hba = old.data_dir / "pg_hba.conf"
    hba.write_text("host all all 0.0.0.0/0 reject\nhost replication all 0.0.0.0/0 reject\n")
    old.signal_postgres(signal.SIGHUP)
    new = cluster.wait_new_primary(old, bound=30)
    assert "PostgreSQL has not answered me" in old.log_path.read_text()
    cluster.wait_healthy(bound=60)
    assert cluster.primary() is not old, f"{old.name} leads again; {new.name} took over first"
