"""Patroni (from PyPI, in its own virtual environment) running 3 PostgreSQL nodes on etcd.

The same surface as tests/integration/pg_cluster.py's PgCluster and Node, so one
measurement loop drives both: `multihost()`, `wait_healthy()`, `stop()`, and per node
`kill_node()`, `signal_postgres()`, `start()`, `wait_agent_exit()`, `query()`.

Patroni runs as the `postgres` OS user when the benchmark runs as root (PostgreSQL
refuses to run as root, Patroni with it). Its postmaster is not Patroni's child (Patroni
detaches it), so every postmaster seen is remembered and killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from free_ports import port_block
from pg_cluster import PgClusterBase, PgNodeBase, _alive

from spofless.dcs import EtcdTls

PATRONI_REQUIREMENT = "patroni[etcd3,psycopg3]>=4.1,<5"
INSTALL_BOUND = 600.0


def ensure_patroni(work_dir: Path) -> tuple[Path, str]:
    """Patroni in work_dir/patroni-venv (installed from PyPI when missing): binary, version."""
    venv = work_dir / "patroni-venv"
    binary = venv / "bin" / "patroni"
    if not binary.exists():
        print(f"installing {PATRONI_REQUIREMENT} into {venv} (pip)", flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        # The distribution's interpreter: Patroni runs as `postgres`, which must be able to
        # reach it (an interpreter under /root, e.g. pyenv's, is not reachable).
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        if subprocess.run([python, "-c", "import ensurepip"], capture_output=True).returncode:
            print("installing python3-venv (apt-get)", flush=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "python3-venv"], check=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", PATRONI_REQUIREMENT],
            check=True,
            timeout=INSTALL_BOUND,
        )
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    return binary, out.stdout.strip()


def postmaster_of(data_dir: Path) -> int | None:
    """The live postmaster of data_dir: its postmaster.pid, checked against the process's
    command line (a stale file's pid may belong to another process by now)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and str(data_dir).encode() in cmdline else None


def _run_as() -> pwd.struct_passwd | None:
    """The OS user Patroni runs as: `postgres` when we are root, else ourselves."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


class PatroniNode(PgNodeBase):
    """One Patroni process and the PostgreSQL it runs."""

    def __init__(self, cluster: PatroniCluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"pg{index}"
        self.pg_port = cluster.pg_port + index
        self.api = f"http://127.0.0.1:{cluster.api_port + index}"
        self.dir = cluster.base / self.name
        self.data_dir = self.dir / "data"
        self.config = self.dir / "patroni.yml"
        self.log_path = self.dir / "patroni.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        c = self.cluster
        user = _run_as()
        self.dir.mkdir(parents=True)
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        hba = [
            "local all all trust",
            "host all all 127.0.0.1/32 trust",
            "host replication all 127.0.0.1/32 trust",
        ]
        config: dict[str, Any] = {
            "scope": c.scope,
            "namespace": "/spofless-bench/",
            "name": self.name,
            "restapi": {
                "listen": f"127.0.0.1:{c.api_port + self.index}",
                "connect_address": f"127.0.0.1:{c.api_port + self.index}",
            },
            "etcd3": {
                "hosts": [f"127.0.0.1:{c.etcd_port + i}" for i in range(3)],
                **self._etcd_tls(user),
            },
            "bootstrap": {
                "dcs": {
                    **c.dcs,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True},
                },
                "initdb": [{"encoding": "UTF8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(c.bin_dir),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "replicator"},
                },
                "parameters": {"unix_socket_directories": str(self.dir)},
                "pg_hba": hba,
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
        }
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML

    def _etcd_tls(self, user: pwd.struct_passwd | None) -> dict[str, str]:
        """Patroni's etcd3 TLS settings: copies of the CA and client certificate that
        its OS user can read (the originals are 0600, ours)."""
        tls = self.cluster.etcd_tls
        if tls is None:
            return {}
        out = {"protocol": "https"}
        for key, src in (("cacert", tls.ca), ("cert", tls.cert), ("key", tls.key)):
            dest = self.dir / f"etcd-{src.name}"
            shutil.copyfile(src, dest)
            dest.chmod(0o600)
            if user is not None:
                os.chown(dest, user.pw_uid, user.pw_gid)
            out[key] = str(dest)
        return out

    # -- processes --------------------------------------------------------------------

    def start(self) -> None:
        user = _run_as()
        env = dict(os.environ)
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.cluster.binary), str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=self.dir,
                env=env,
                **kwargs,
            )

    @property
    def agent_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def postmaster_pid(self) -> int | None:
        pid = postmaster_of(self.data_dir)
        if pid is not None:
            self.cluster.seen_postmasters.add(pid)
        return pid

    def kill_node(self) -> None:
        """kill -9 of the whole node: Patroni and every PostgreSQL process at once."""
        pid = self.postmaster_pid()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
        if pid is not None:
            self.signal_postgres(signal.SIGKILL, pid)

    def wait_agent_exit(self, bound: float = 10.0) -> None:
        if self.proc is not None:
            self.proc.wait(bound)

    def stop(self) -> None:
        """SIGTERM (Patroni stops PostgreSQL), then SIGKILL past a bound."""
        self.postmaster_pid()
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    # -- observing --------------------------------------------------------------------

    def is_primary(self) -> bool:
        try:
            return httpx.get(f"{self.api}/primary", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def members(self) -> list[dict[str, Any]] | None:
        try:
            return list(httpx.get(f"{self.api}/cluster", timeout=1.0).json()["members"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None


class PatroniCluster(PgClusterBase[PatroniNode]):
    """Three Patroni nodes of one scope on a running 3-member etcd."""

    def __init__(
        self,
        base: Path,
        binary: Path,
        bin_dir: Path,
        etcd_port: int,
        dcs: dict[str, int],
        etcd_tls: EtcdTls | None = None,
    ) -> None:
        self.base = base
        self.etcd_tls = etcd_tls  # the CA and client certificate etcd requires
        self.binary = binary
        self.bin_dir = bin_dir
        self.etcd_port = etcd_port
        self.dcs = dcs  # ttl, loop_wait, retry_timeout
        self.scope = f"bench{random.randint(0, 1 << 30)}"
        self.pg_port = port_block(3)
        self.api_port = port_block(3)
        self.nodes = [PatroniNode(self, i) for i in range(3)]
        self.seen_postmasters: set[int] = set()
        self.synchronous = False

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.base.chmod(0o755)
        for node in self.nodes:
            node.write_config()
        for node in self.nodes:
            node.start()

    def healthy(self) -> bool:
        """One running leader and two streaming replicas, seen by every live node."""
        for node in self.nodes:
            node.postmaster_pid()  # remember every postmaster, for the final cleanup
        members = next((m for n in self.nodes if (m := n.members()) is not None), None)
        if members is None or len(members) != 3:
            return False
        states = sorted((str(m.get("role")), str(m.get("state"))) for m in members)
        return states == [
            ("leader", "running"),
            ("replica", "streaming"),
            ("replica", "streaming"),
        ] and all(n.agent_pid is not None for n in self.nodes)

    def wait_healthy(self, bound: float = 120.0) -> PatroniNode:
        self.wait(lambda: self.healthy() and self.primary() is not None, "healthy", bound)
        primary = self.primary()
        assert primary is not None
        return primary

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
