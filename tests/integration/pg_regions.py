"""Two PostgreSQL clusters in two regions for standby-cluster tests: `db` (region us) and
its standby cluster `db_eu` (region eu, `standby_of: db`), two members each, each with
its own one-member etcd. Agents run as `spofless pg agent FILE --component C
--instance N`, as the stack runs them. Every process is stopped at the end.

    from pg_regions import Regions, start_regions

`start_regions(auto_promote=True)`: a third region `witness` and a quorum etcd of three
members (hosts us1, eu1, w1, all on 127.0.0.1), with `auto_promote` on `db_eu`, and `db`
synchronous (its fence witness named beside its synchronous replica).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from etcd_fixtures import RunningCluster
from free_ports import port_block
from pg_cluster import (
    AGENT_START_BOUND,
    Node,
    PgClusterBase,
    kill_postmasters,
    require_postgres_and_etcd,
)

from spofless.dcs.etcd_server import local_cluster
from spofless.security import client_params
from spofless.topology import load_topology

TOPOLOGY = """\
name: {name}
security: {{tls: false}}
regions:
  us: {{zones: [a]}}
  eu: {{zones: [a]}}
hosts:
  us1: {{zone: us/a}}
  us2: {{zone: us/a}}
  eu1: {{zone: eu/a}}
  eu2: {{zone: eu/a}}
components:
  db:
    kind: postgres
    instances: [us1, us2]
    needs: [etcd_us]
    port: {db_port}
    api_port: {db_api}
  db_eu:
    kind: postgres
    instances: [eu1, eu2]
    needs: [etcd_eu]
    standby_of: db
    port: {eu_port}
    api_port: {eu_api}
  etcd_us: {{kind: etcd, instances: [us1], port: {etcd_us}}}
  etcd_eu: {{kind: etcd, instances: [eu1], port: {etcd_eu}}}
entry: [db]
"""
# With auto_promote: the third region, its host and the quorum etcd over the three.
AUTO_PROMOTE = """  witness: {{zones: [a]}}
hosts:
  w1: {{zone: witness/a}}
"""


class Region(PgClusterBase[Node]):
    """One cluster (postgres component) of the two: what its Nodes need."""

    def __init__(self, regions: Regions, component: str, region: str) -> None:
        self.regions = regions
        self.component = component
        self.region = region
        self.base = regions.base
        self.state_dir = regions.state_dir
        self.file = regions.file
        self.pg_port = port_block(2)
        self.api_port = port_block(2)
        self.seen_postmasters: set[int] = set()
        self.nodes = [Node(self, i, component) for i in range(2)]  # type: ignore[arg-type]

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    @property
    def client_auth(self) -> dict[str, str | int]:
        return self.regions.client_auth

    def leader(self) -> Node | None:
        """The member holding this cluster's lease (a primary or a standby leader)."""
        for n in self.nodes:
            s = n.status()
            if n.agent_pid is not None and s is not None and s.get("leader") and s["running"]:
                return n
        return None

    def writable(self) -> list[Node]:
        """Members whose PostgreSQL accepts writes now (asked over SQL)."""
        out = []
        for n in self.nodes:
            with contextlib.suppress(Exception):
                if not n.query("SELECT pg_is_in_recovery()")[0][0]:
                    out.append(n)
        return out

    def healthy(self, *, standby: bool) -> bool:
        """A leader and a replica streaming from it; in a standby cluster the leader is a
        standby streaming from the primary cluster, and no member is writable."""
        statuses = [n.status() for n in self.nodes]
        if any(s is None or not s.get("running") for s in statuses):
            return False
        leaders = [s for s in statuses if s is not None and s.get("leader")]
        if len(leaders) != 1:
            return False
        want = "replica" if standby else "primary"
        others = [s for s in statuses if s is not None and not s.get("leader")]
        return (
            leaders[0]["role"] == want
            and all(s["role"] == "replica" and s["streaming"] for s in others)
            and (not standby or bool(leaders[0]["streaming"]))
        )

    def wait_healthy(self, *, standby: bool, bound: float = AGENT_START_BOUND) -> Node:
        what = "standby leader streaming and a streaming replica" if standby else "a primary"
        self.wait(lambda: self.healthy(standby=standby), f"{self.component}: {what}", bound)
        leader = self.leader()
        assert leader is not None
        return leader

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_tail()}" for n in self.nodes)


class Regions:
    """The two clusters, their etcds and the topology file."""

    def __init__(self, base: Path, auto_promote: bool = False) -> None:
        self.base = base
        self.state_dir = base / "state"
        self.file = base / "regions.yaml"
        self.client_auth: dict[str, str | int] = {}
        self.us = Region(self, "db", "us")
        self.eu = Region(self, "db_eu", "eu")
        self.etcd_ports = {"us": port_block(2), "eu": port_block(2)}
        self.name = f"t{random.randint(0, 1 << 30)}"  # the topology's: etcd key prefixes
        text = TOPOLOGY
        if auto_promote:
            self.etcd_ports["quorum"] = port_block(6)
            q = self.etcd_ports["quorum"]
            text = (
                text.replace(
                    "hosts:\n", "  witness: {{zones: [a]}}\nhosts:\n  w1: {{zone: witness/a}}\n"
                )
                .replace(
                    "    standby_of: db\n",
                    "    standby_of: db\n    auto_promote: {{quorum: quorum, ttl: 6}}\n",
                )
                # Synchronous inside us: the fence witness is named beside the sync replica.
                .replace("    needs: [etcd_us]\n", "    needs: [etcd_us]\n    synchronous: true\n")
                .replace(
                    "entry: [db]",
                    f"  quorum: {{{{kind: etcd, instances: [us1, eu1, w1], port: {q}}}}}\n"
                    "entry: [db]",
                )
            )
        self.file.write_text(
            text.format(
                name=self.name,
                db_port=self.us.pg_port,
                db_api=self.us.api_port,
                eu_port=self.eu.pg_port,
                eu_api=self.eu.api_port,
                etcd_us=self.etcd_ports["us"],
                etcd_eu=self.etcd_ports["eu"],
            )
        )
        self.etcd: dict[str, RunningCluster] = {}

    @property
    def clusters(self) -> tuple[Region, Region]:
        return self.us, self.eu

    def nodes(self) -> list[Node]:
        return [*self.us.nodes, *self.eu.nodes]

    def multihost(self, **extra: str | int) -> str:
        """libpq over all four members, to whichever accepts writes."""
        params: dict[str, Any] = {
            "host": ",".join("127.0.0.1" for _ in self.nodes()),
            "port": ",".join(str(n.pg_port) for n in self.nodes()),
            "user": "postgres",
            "dbname": "postgres",
            "connect_timeout": 1,
            "target_session_attrs": "read-write",
            **self.client_auth,
        }
        params.update(extra)
        return " ".join(f"{k}={v}" for k, v in params.items())

    def spofless(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("spofless")
        return subprocess.run(
            [str(exe), *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def start_etcd(self, region: str) -> None:
        """`region`'s own etcd (one member), or with "quorum" the quorum's three."""
        port = self.etcd_ports[region]
        n = 3 if region == "quorum" else 1
        clients = [port + i for i in range(n)]
        peers = [port + n + i for i in range(n)]
        etcd = RunningCluster(
            local_cluster(self.base / f"etcd-{region}", clients, peers), self.base
        )
        self.etcd[region] = etcd
        etcd.start()

    def stop(self) -> None:
        for c in self.clusters:
            c.stop()
            kill_postmasters(c.seen_postmasters, self.base)
        for etcd in self.etcd.values():
            etcd.stop_all()

    def keep_logs(self) -> None:
        dest = os.environ.get("SPOFLESS_KEEP_LOGS")
        if dest:
            out = Path(dest) / self.base.name
            out.mkdir(parents=True, exist_ok=True)
            for log in [*self.base.glob("*.log"), *self.state_dir.glob("data/*.log")]:
                shutil.copy(log, out / log.name)


@contextlib.contextmanager
def start_regions(auto_promote: bool = False) -> Iterator[Regions]:
    """Both clusters healthy, `db` primary with table `t (id bigint primary key)`."""
    require_postgres_and_etcd()
    base = Path(tempfile.mkdtemp(prefix="spofless-pgreg-"))
    if os.geteuid() == 0:
        base.chmod(0o755)
    regions = Regions(base, auto_promote)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        subprocess.run(
            [str(Path(sys.executable).with_name("spofless")), "secrets", "init", str(regions.file)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        regions.client_auth = dict(client_params(load_topology(regions.file), "db"))
        for region in regions.etcd_ports:
            regions.start_etcd(region)
        regions.us.start()
        primary = regions.us.wait_healthy(standby=False)
        primary.query("CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        regions.eu.start()
        regions.eu.wait_healthy(standby=True)
        yield regions
    finally:
        regions.stop()
        regions.keep_logs()
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


__all__ = ["Region", "Regions", "start_regions"]
