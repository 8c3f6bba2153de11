"""`spofless up` with TLS on (the default): etcd and PostgreSQL, every etcd client through TLS.

A 3-member etcd and 2 PostgreSQL agents on one machine. The members serve https with the
topology's host certificates and require client certificates; the stack's health checks
and waits, `status` (etcd roles), the agents (a primary is elected through etcd), `spofless
pg switchover` and `Database.from_topology` all present the topology's client certificate
and work; plain http and a client without a certificate are refused by the running members.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_cluster import require_postgres_and_etcd
from stack_fixtures import StackRun, free_port_block, spofless, stack_run
from waiting import wait_for

from spofless.client import Database
from spofless.security import secrets_dir
from spofless.topology import load_topology

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: tlsstack
hosts:
  n1: {{}}
  n2: {{}}
  n3: {{}}
components:
  db:
    kind: postgres
    instances: [n1, n2]
    needs: [etcd]
    port: {pg}
    api_port: {api}
    ttl: 3
    loop_wait: 0.5
  etcd:
    kind: etcd
    instances: [n1, n2, n3]
    min_up: majority
    port: {etcd}
    peer_port: {peer}
entry: [db]
"""


@pytest.fixture
def tls_stack() -> Iterator[tuple[StackRun, int]]:
    require_postgres_and_etcd()
    # Not pytest's tmp_path: PostgreSQL's OS user must reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="spofless-stack-tls-"))
    base.chmod(0o755)
    taken: list[int] = []
    ports = {}
    for key, n in (("pg", 2), ("api", 2), ("etcd", 3), ("peer", 3)):
        ports[key] = free_port_block(n, taken)
        taken += range(ports[key], ports[key] + n)
    f = base / "tlsstack.yaml"
    f.write_text(TOPOLOGY.format(**ports))
    try:
        with stack_run(f, base / "state") as run:
            yield run, ports["etcd"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _roles(run: StackRun, component: str) -> list[str]:
    return sorted(str(i["role"]) for i in run.status()["instances"] if i["component"] == component)


def test_the_whole_stack_runs_with_etcd_over_tls(tls_stack: tuple[StackRun, int]) -> None:
    run, etcd_port = tls_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr

    # `status` asks each member whether it leads: over TLS, with the client certificate.
    wait_for(
        "an etcd leader and two followers",
        lambda: _roles(run, "etcd") == ["follower", "follower", "leader"],
        timeout=30,
    )
    # The agents elect a primary through etcd.
    wait_for("a primary and a replica", lambda: _roles(run, "db") == ["primary", "replica"], 90)

    secrets = secrets_dir(load_topology(run.topology))
    ca = ssl.create_default_context(cafile=str(secrets / "ca.crt"))
    with pytest.raises(httpx.TransportError):  # no client certificate
        httpx.post(f"https://127.0.0.1:{etcd_port}/v3/kv/range", json={"key": "Lw=="}, verify=ca)
    try:  # plain http on the https port
        r = httpx.post(f"http://127.0.0.1:{etcd_port}/v3/kv/range", json={"key": "Lw=="})
    except httpx.TransportError:
        pass
    else:
        assert r.status_code == 400 and "header" not in r.text

    # The operator's command and the client library present the certificate too.
    old = _primary(run)
    switch = _pg(run, "switchover")
    assert switch.returncode == 0, switch.stdout + switch.stderr
    wait_for("the other member primary", lambda: _primary(run) not in (None, old), 30)
    with Database.from_topology(run.topology, failover_timeout=30) as db:
        db.execute("CREATE TABLE IF NOT EXISTS tls_t (id int PRIMARY KEY)")
        db.execute("INSERT INTO tls_t VALUES (1)")
        assert db.execute("SELECT count(*) FROM tls_t") == [(1,)]

    down = run.cli("down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr


def _primary(run: StackRun) -> Any:
    for i in run.status()["instances"]:
        if i["component"] == "db" and i["role"] == "primary":
            return i["name"]
    return None


def _pg(run: StackRun, *args: str) -> Any:
    return spofless("pg", *args, run.topology, timeout=90)
