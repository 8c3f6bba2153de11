"""A real PostgreSQL HA cluster for fault tests: 3 etcd members, 3 agents as OS processes.

Each agent runs as `spofless pg agent FILE --component db --instance N`, the
command the stack runner uses, on a topology file written for the test on
free ports. A "node" is one agent and its PostgreSQL (the postmaster's process
group: postmaster, backends, walsenders). Every process is stopped at the end,
whatever happened: agents (SIGCONT, SIGTERM, then SIGKILL), PostgreSQL process
groups seen during the test (SIGKILL), etcd members.

Use from a test module (pytest puts this directory on sys.path):

    from pg_cluster import PgCluster, start_cluster
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import psycopg
import pytest
from etcd_fixtures import RunningCluster
from free_ports import port_block as consecutive_free_ports

from spofless.dcs.etcd_server import local_cluster
from spofless.pg import postmaster_pid
from spofless.pg._binaries import find_binaries
from spofless.pg._errors import PgSetupError
from spofless.security import client_params, etcd_client_tls, etcd_member_tls
from spofless.topology import load_topology

AGENT_START_BOUND = 90.0  # initdb + two pg_basebackups on a busy 2-core machine


def require_postgres_and_etcd() -> None:
    try:
        find_binaries()
    except PgSetupError as exc:
        pytest.skip(f"PostgreSQL not installed: {exc}")
    if shutil.which("etcd") is None:
        pytest.skip("etcd not installed (make system-deps installs etcd-server)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` OS user to run PostgreSQL as")


TOPOLOGY = """\
name: {name}
components:
  db:
    kind: postgres
    instances: 3
    needs: [etcd]
    port: {pg_port}
    api_port: {api_port}
    synchronous: {synchronous}
  etcd:
    kind: etcd
    instances: 3
    min_up: majority
    port: {etcd_port}
entry: [db]
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def kill_postmasters(pids: set[int], base: Path) -> None:
    """SIGKILL each postmaster still running under `base`, and its children (a pid whose
    process is gone may have been reused by another process: it is left alone)."""
    for pid in pids:
        try:
            ours = str(base).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if not ours:
            continue
        for p in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGCONT)
                os.kill(p, signal.SIGKILL)


class PgNodeBase:
    """What every node of a PostgreSQL cluster under test offers, whoever manages it
    (a spofless agent here, Patroni in benchmarks/pg_failover_vs_patroni)."""

    name: str
    pg_port: int
    log_path: Path

    @property
    def agent_pid(self) -> int | None:
        raise NotImplementedError

    def is_primary(self) -> bool:
        raise NotImplementedError

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, remembered in the cluster for the final cleanup."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def signal_postgres(self, sig: signal.Signals, postmaster: int | None = None) -> None:
        """Signal the postmaster and every process it forked (each child of PostgreSQL
        is its own process group leader, so killpg would reach the postmaster only)."""
        pid = postmaster or self.postmaster_pid()
        assert pid is not None, f"{self.name}: PostgreSQL is not running"
        for p in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)

    def auth_params(self) -> dict[str, str | int]:
        """What a client adds to connect (a password, TLS); nothing by default."""
        return {}

    def conninfo(self, **extra: str | int) -> str:
        params: dict[str, str | int] = {
            "host": "127.0.0.1",
            "port": self.pg_port,
            "user": "postgres",
            "dbname": "postgres",
            "connect_timeout": 2,
            **self.auth_params(),
        }
        params.update(extra)
        return " ".join(f"{k}={v}" for k, v in params.items())

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


N = TypeVar("N", bound=PgNodeBase)


class PgClusterBase(Generic[N]):
    """What every three-member cluster under test offers, whoever manages it."""

    nodes: list[N]
    base: Path  # every data directory is below it
    seen_postmasters: set[int]

    def multihost(self, **extra: str | int) -> str:
        """A libpq multi-host connection string over the members, to whichever is primary."""
        params: dict[str, str | int] = {
            "host": ",".join("127.0.0.1" for _ in self.nodes),
            "port": ",".join(str(n.pg_port) for n in self.nodes),
            "user": "postgres",
            "dbname": "postgres",
            "connect_timeout": 1,
            "target_session_attrs": "read-write",
            **(self.nodes[0].auth_params() if self.nodes else {}),
        }
        params.update(extra)
        return " ".join(f"{k}={v}" for k, v in params.items())

    def primary(self) -> N | None:
        found = [n for n in self.nodes if n.agent_pid is not None and n.is_primary()]
        return found[0] if len(found) == 1 else None

    def wait(self, check: Callable[[], bool], what: str, bound: float) -> None:
        """Until `check` holds; a check that raises (a member restarting refuses a
        connection) counts as not yet, and the last error is shown if time runs out."""
        deadline = time.monotonic() + bound
        error: Exception | None = None
        while True:
            try:
                if check():
                    return
            except Exception as exc:  # reported below when time runs out
                error = exc
                print(f"[wait] {what}: {exc!r}")
            if time.monotonic() > deadline:
                self.keep_logs()
                last = f" (last error: {error!r})" if error is not None else ""
                raise AssertionError(f"not within {bound:.0f}s: {what}{last}\n{self.logs()}")
            time.sleep(0.1)

    def wait_new_primary(self, old: N, bound: float = 30.0) -> N:
        self.wait(
            lambda: (p := self.primary()) is not None and p is not old,
            f"a new primary other than {old.name}",
            bound,
        )
        primary = self.primary()
        assert primary is not None
        return primary

    def stop(self) -> None:
        """Stop every node, then SIGKILL any postmaster seen that is still running."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        for node in self.nodes:
            node.postmaster_pid()  # remember the last one too
        kill_postmasters(self.seen_postmasters, self.base)

    def keep_logs(self) -> None:
        """Keep the logs somewhere before the directory goes (when the cluster can)."""

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_tail()}" for n in self.nodes)


class Node(PgNodeBase):
    """One agent process and the PostgreSQL it runs."""

    def __init__(self, cluster: PgCluster, index: int, component: str = "db") -> None:
        self.cluster = cluster
        self.index = index
        self.component = component
        self.name = f"{component}-{index}"
        self.pg_port = cluster.pg_port + index
        self.api = f"http://127.0.0.1:{cluster.api_port + index}"
        self.data_dir = cluster.state_dir / "data" / self.name
        log = f"agent-{index}.log" if component == "db" else f"agent-{self.name}.log"
        self.log_path = cluster.base / log
        self.proc: subprocess.Popen[bytes] | None = None

    # -- processes --------------------------------------------------------------------

    def start(self) -> None:
        spofless = Path(sys.executable).with_name("spofless")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(spofless),
                    "pg",
                    "agent",
                    str(self.cluster.file),
                    "--component",
                    self.component,
                    "--instance",
                    str(self.index),
                    "--state-dir",
                    str(self.cluster.state_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def agent_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def auth_params(self) -> dict[str, str | int]:
        return self.cluster.client_auth

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (its process group holds every PostgreSQL process)."""
        pid = postmaster_pid(self.data_dir)
        if pid is None:
            return None
        self.cluster.seen_postmasters.add(pid)
        return pid

    def signal_agent(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill_node(self) -> None:
        """kill -9 of the whole node: the agent and every PostgreSQL process at once."""
        pid = self.postmaster_pid()
        self.signal_agent(signal.SIGKILL)
        if pid is not None:
            self.signal_postgres(signal.SIGKILL, pid)

    def stop_node(self) -> None:
        """SIGSTOP of the whole node: the agent, then PostgreSQL's processes."""
        self.signal_agent(signal.SIGSTOP)
        self.signal_postgres(signal.SIGSTOP)

    def cont_node(self, postmaster: int) -> None:
        """SIGCONT of the whole node, PostgreSQL first: the worst order for safety (a woken
        VM resumes everything at once; PostgreSQL may well run before the agent)."""
        self.signal_postgres(signal.SIGCONT, postmaster)
        self.signal_agent(signal.SIGCONT)

    def wait_agent_exit(self, bound: float = 10.0) -> None:
        assert self.proc is not None
        self.proc.wait(bound)

    def stop(self) -> None:
        """Stop the agent however it is (stopped, running, dead): SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # -- observing --------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.api}/status", timeout=1.0)
            return dict(r.json())
        except (httpx.HTTPError, ValueError):
            return None

    def is_primary(self) -> bool:
        try:
            return httpx.get(f"{self.api}/primary", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


class PgCluster(PgClusterBase[Node]):
    """Three agents on one topology; helpers to wait for roles and to check data."""

    def __init__(self, base: Path, etcd_port: int, synchronous: bool | str) -> None:
        self.base = base
        self.state_dir = base / "state"
        self.pg_port = consecutive_free_ports(3)
        self.api_port = consecutive_free_ports(3)
        self.etcd_port = etcd_port
        self.synchronous = synchronous
        self.file = base / "cluster.yaml"
        self.file.write_text(
            TOPOLOGY.format(
                name=f"t{random.randint(0, 1 << 30)}",
                pg_port=self.pg_port,
                api_port=self.api_port,
                synchronous=str(synchronous).lower(),  # true, false or strict
                etcd_port=etcd_port,
            )
        )
        self.nodes = [Node(self, i) for i in range(3)]
        self.seen_postmasters: set[int] = set()
        self.etcd: RunningCluster | None = None  # set by start_cluster
        self.client_auth: dict[str, str | int] = {}  # set by make_secrets

    def make_secrets(self) -> None:
        """`spofless secrets init` as a user would; a client's password and TLS from them."""
        spofless = Path(sys.executable).with_name("spofless")
        subprocess.run(
            [str(spofless), "secrets", "init", str(self.file)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.client_auth = dict(client_params(load_topology(self.file), "db"))

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def healthy(self) -> bool:
        """One primary holding the lease and every other member a streaming replica of it."""
        statuses = [n.status() for n in self.nodes]
        if any(s is None or not s.get("running") for s in statuses):
            return False
        roles = sorted(str(s["role"]) for s in statuses if s is not None)
        if roles != ["primary", "replica", "replica"]:
            return False
        return all(
            s["leader"] if s["role"] == "primary" else s["streaming"]
            for s in statuses
            if s is not None
        ) and (not self.synchronous or self.sync_members() != [])

    def sync_members(self) -> list[str]:
        for n in self.nodes:
            try:
                return list(httpx.get(f"{n.api}/cluster", timeout=1.0).json()["synchronous"])
            except (httpx.HTTPError, ValueError, KeyError):
                continue
        return []

    def wait_healthy(self, bound: float = AGENT_START_BOUND) -> Node:
        self.wait(self.healthy, "one primary and two streaming replicas", bound)
        primary = self.primary()
        assert primary is not None
        return primary

    def keep_logs(self) -> None:
        """Copy every log to $SPOFLESS_KEEP_LOGS (when set) before the directory goes."""
        dest = os.environ.get("SPOFLESS_KEEP_LOGS")
        if dest:
            out = Path(dest) / self.base.name
            out.mkdir(parents=True, exist_ok=True)
            for log in [*self.base.glob("*.log"), *self.state_dir.glob("data/*.log")]:
                shutil.copy(log, out / log.name)


@contextlib.contextmanager
def start_cluster(synchronous: bool | str) -> Iterator[PgCluster]:
    """A healthy cluster with a table `t (id bigint primary key)`; everything stopped after."""
    require_postgres_and_etcd()
    base = Path(tempfile.mkdtemp(prefix="spofless-pgha-"))
    if os.geteuid() == 0:  # PostgreSQL runs as `postgres` and must reach its data dirs
        base.chmod(0o755)
    etcd_port = consecutive_free_ports(3)
    peer_port = consecutive_free_ports(3)
    cluster = PgCluster(base, etcd_port, synchronous)
    # SIGTERM to pytest (a CI timeout, `kill`) would skip finalizers: make it an interrupt,
    # which pytest unwinds through them, so no agent, PostgreSQL or etcd is left behind.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    etcd: RunningCluster | None = None
    try:
        cluster.make_secrets()
        # etcd as `up` runs it: over TLS with the topology's certificates.
        topology = load_topology(cluster.file)
        etcd = RunningCluster(
            local_cluster(
                base / "etcd",
                [etcd_port + i for i in range(3)],
                [peer_port + i for i in range(3)],
                tls=etcd_member_tls(topology, None),
            ),
            base,
            client_tls=etcd_client_tls(topology),
        )
        cluster.etcd = etcd
        etcd.start()
        cluster.start()
        primary = cluster.wait_healthy()
        primary.query("CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        yield cluster
    finally:
        cluster.stop()
        cluster.keep_logs()
        if etcd is not None:
            etcd.stop_all()
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
