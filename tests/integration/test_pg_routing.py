"""Read-write and read-only endpoints: real `spofless lb` processes in front of real PostgreSQL.

A 3-member etcd and 3 agents as processes (pg_cluster, synchronous mode), two
read-write load balancers (`role: primary`) and two read-only ones (`role:
replica`), each a `spofless lb FILE --component C --instance I` process, as
the stack runner starts them. The application sees two stable addresses:

- through the read-write endpoint it reaches the primary and writes;
- through the read-only endpoint its connections go round robin to the replicas;
- the writer (pg_writer, unique increasing ids every 10-20 ms) keeps writing through the
  read-write endpoint while the primary's postmaster, or its whole node (agent and
  postmaster), is killed with kill -9, or the node is frozen (SIGSTOP) past the ttl and
  woken. The write-unavailability window is printed (run with -s); every acknowledged id
  is on the new primary (zero lost, synchronous mode); no write was acknowledged by the
  old primary after the new one acknowledged one; a connection opened through the route
  before the fault is closed (for a frozen primary, by the balancer: tcp_close_on_down).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lb_fixtures import processes, wait_port
from pg_cluster import Node, PgCluster, consecutive_free_ports, start_cluster
from pg_writer import Ack, Writer, WriterReport, _bounded

pytestmark = pytest.mark.integration

ROUTED = """\
name: routed
components:
  db-rw:
    kind: load_balancer
    instances: 2
    mode: tcp
    port: {rw_port}
    routes: [{{to: db, role: primary}}]
  db-ro:
    kind: load_balancer
    instances: 2
    mode: tcp
    port: {ro_port}
    routes: [{{to: db, role: replica}}]
  db:
    kind: postgres
    instances: 3
    port: {pg_port}
    api_port: {api_port}
    synchronous: true
entry: [db-rw, db-ro]
"""


class Endpoints:
    """The load balancers of one cluster and the two connection strings an app uses."""

    def __init__(self, cluster: PgCluster, rw_port: int, ro_port: int) -> None:
        self.cluster = cluster
        self.rw_port = rw_port
        self.ro_port = ro_port

    def _dsn(self, base: int, **extra: str | int) -> str:
        params: dict[str, str | int] = {
            "host": "127.0.0.1,127.0.0.1",
            "port": f"{base},{base + 1}",
            "user": "postgres",
            "dbname": "postgres",
            "connect_timeout": 1,
            **self.cluster.client_auth,
        }
        params.update(extra)
        return " ".join(f"{k}={v}" for k, v in params.items())

    def rw(self, **extra: str | int) -> str:
        return self._dsn(self.rw_port, **extra)

    def ro(self, **extra: str | int) -> str:
        return self._dsn(self.ro_port, **extra)


def _server(dsn: str) -> tuple[int, bool] | None:
    """(port, in recovery) of the server a new connection to `dsn` reaches, or None."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
            assert row is not None
            return int(row[0]), bool(row[1])
    except psycopg.OperationalError:
        return None


def _wait_routes(eps: Endpoints, primary: Node, bound: float = 30.0) -> None:
    """Until both rw instances reach `primary` and the ro ones reach replicas only."""
    replicas = {n.pg_port for n in eps.cluster.nodes if n is not primary}
    last: list[object] = []

    def ready() -> bool:
        rw = [_server(eps._dsn(eps.rw_port + i)) for i in range(2)]
        ro = {_server(eps._dsn(eps.ro_port + i % 2)) for i in range(6)}
        last[:] = [rw, ro]
        return set(rw) == {(primary.pg_port, False)} and ro <= {(p, True) for p in replicas}

    try:
        eps.cluster.wait(ready, f"the routes reach {primary.name} and its replicas", bound)
    except AssertionError:
        raise AssertionError(f"rw and ro reached (port, in recovery): {last}") from None


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    spofless = Path(sys.executable).with_name("spofless")
    with start_cluster(synchronous=True) as cluster, processes() as procs:
        eps = Endpoints(cluster, consecutive_free_ports(2), consecutive_free_ports(2))
        file = cluster.base / "routed.yaml"
        file.write_text(
            ROUTED.format(
                rw_port=eps.rw_port,
                ro_port=eps.ro_port,
                pg_port=cluster.pg_port,
                api_port=cluster.api_port,
            )
        )
        for component, port in (("db-rw", eps.rw_port), ("db-ro", eps.ro_port)):
            for i in range(2):
                log = (cluster.base / f"{component}-{i}.log").open("ab")
                argv = [str(spofless), "lb", str(file), "--component", component]
                procs.append(
                    subprocess.Popen(
                        [*argv, "--instance", str(i)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )
                log.close()
                wait_port(port + i)
        yield eps


def test_writes_go_to_the_primary_and_reads_to_the_replicas(endpoints: Endpoints) -> None:
    cluster = endpoints.cluster
    primary = cluster.wait_healthy()
    _wait_routes(endpoints, primary)
    with psycopg.connect(endpoints.rw(), autocommit=True) as conn:
        conn.execute("INSERT INTO t (id) VALUES (-7)")
        row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
        assert row == (primary.pg_port, False)
    # Synchronous: the commit is on a replica too; reads through the ro route see it.
    seen: set[int] = set()
    for _ in range(8):
        with psycopg.connect(endpoints.ro(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT inet_server_port(), pg_is_in_recovery(), count(*) FROM t WHERE id = -7"
            ).fetchone()
            assert row is not None
            port, in_recovery, _ = row
            assert in_recovery, f"a read through the read-only route reached {port}, a primary"
            seen.add(int(port))
    replicas = {n.pg_port for n in cluster.nodes if n is not primary}
    assert seen == replicas, "round robin over both replicas"
    # A write through the read-only route is refused by PostgreSQL itself.
    with (
        psycopg.connect(endpoints.ro(), autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("INSERT INTO t (id) VALUES (-8)")


class RoutedWriter(Writer):
    """pg_writer's Writer, remembering the server that acknowledged each id.

    Through a load balancer the connection's own port is the balancer's, so each
    insert asks the server for its port in the same statement.
    """

    def __init__(self, conninfo: str, first_id: int) -> None:
        super().__init__(conninfo, table="t", first_id=first_id)
        self.server_of: dict[int, int] = {}

    def _insert(self, conn: psycopg.Connection[Any], ident: int) -> None:
        sql = "INSERT INTO t (id) VALUES (%s) RETURNING inet_server_port()"
        cur = _bounded(lambda: conn.execute(sql, (ident,)), conn)
        row = cur.fetchone()
        assert row is not None
        self.server_of[ident] = int(row[0])

    def server_report(self) -> WriterReport:
        """The report with each ack's server port instead of the balancer's."""
        report = self.stop()
        acks = [Ack(a.id, self.server_of[a.id], a.at) for a in report.acks]
        return WriterReport(acks=acks, failed=report.failed)


FAULTS = ["kill-postmaster", "kill-node", "stop-node"]
TTL = 3.0  # the topology's default lease ttl


def _closed_by_peer(conn: psycopg.Connection[Any]) -> bool:
    """Whether the other end (the balancer) closed this connection's socket.

    A dying server may send a last message first (PostgreSQL's backend writes "terminating
    connection due to unexpected postmaster exit"): read past whatever is pending to see
    the end of the stream. The connection is never used again, so consuming is fine.
    """
    fd = conn.fileno()
    with socket.socket(fileno=fd) as s:
        try:
            s.setblocking(False)
            # End of stream after at most 64 reads of 64 KiB; BlockingIOError: still open.
            return any(s.recv(65536) == b"" for _ in range(64))
        except BlockingIOError:
            return False  # open, nothing (more) to read
        except OSError:
            return True  # reset
        finally:
            s.setblocking(True)
            s.detach()  # the fd belongs to libpq


@pytest.mark.parametrize("fault", FAULTS)
def test_writer_through_the_read_write_route(endpoints: Endpoints, fault: str) -> None:
    cluster = endpoints.cluster
    old = cluster.wait_healthy()
    _wait_routes(endpoints, old)
    first = int(old.query("SELECT coalesce(max(id), 0) FROM t")[0][0]) + 1000
    # An idle connection through the route, opened before the fault: it must not survive.
    idle = psycopg.connect(endpoints.rw(), autocommit=True)
    try:
        writer = RoutedWriter(endpoints.rw(), first)
        with writer:
            cluster.wait(lambda: writer.acks_since(0) > 20, "the writer writes", 20)
            fault_at = time.monotonic()
            print(f"\n[route {fault}] fault on {old.name} at {time.strftime('%H:%M:%S')}")
            if fault == "kill-node":
                old.kill_node()
            elif fault == "kill-postmaster":
                old.signal_postgres(signal.SIGKILL)
            else:
                postmaster = old.postmaster_pid()
                assert postmaster is not None
                old.stop_node()
                cluster.wait_new_primary(old, bound=30)
            # The connection to the old primary is closed: by the dead server, or for a frozen
            # one (whose kernel keeps the socket open) by the balancer when it marks it down.
            cluster.wait(lambda: _closed_by_peer(idle), "the old primary's connection closed", 20)
            if fault == "stop-node":
                time.sleep(max(0.0, fault_at + TTL + 2 - time.monotonic()))
                old.cont_node(postmaster)  # the old primary wakes while the writer writes
            cluster.wait(lambda: writer.acks_since(fault_at) > 50, "writes resume", 40)
            if fault == "stop-node":
                time.sleep(3.0)  # and keeps writing while the woken old primary rejoins
            report = writer.server_report()
    finally:  # also when an assertion fails: no connection left to the GC
        with contextlib.suppress(Exception):
            idle.close()

    if fault == "kill-node":
        old.wait_agent_exit()
        old.start()  # as the stack runner would: the old primary rejoins as a replica
    new = cluster.wait_healthy(bound=60)
    if fault != "kill-postmaster":
        assert new is not old, f"{old.name} still the primary after {fault}"
    present = {int(r[0]) for r in new.query("SELECT id FROM t")}
    lost = [a.id for a in report.acks if a.id not in present]
    late = report.late_acks_by(old.pg_port, new.pg_port)
    window = report.window(fault_at)
    print(
        f"[route {fault}] window {window:.2f}s, {len(report.acks)} acknowledged, "
        f"{len(lost)} lost, {report.failed} failed attempts, {len(late)} acknowledged by "
        f"the old primary after the new one ({old.name} -> {new.name})"
    )
    assert report.acked_after(fault_at), "no write acknowledged after the fault"
    assert late == [], f"acknowledged by the old primary after failover: {late[:5]}"
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    assert {a.port for a in report.acks[-20:]} == {new.pg_port}
    # The routes follow: writes reach the new primary, reads its replicas (the old one too).
    _wait_routes(endpoints, new)
