"""Write unavailability and lost acknowledged writes after kill -9 of the primary:
spofless vs Patroni (defaults and tuned), in one run, on one 3-member etcd.

    .venv/bin/python benchmarks/pg_failover_vs_patroni/run.py [--reps 5] [--quick]

For each system (3 PostgreSQL nodes, asynchronous replication, the system's defaults
unless tuned) and each fault ("kill-node": kill -9 of the primary's agent or Patroni
AND its postmaster with every PostgreSQL process; "kill-postmaster": kill -9 of the
postmaster and its children alone), a writer inserts unique increasing ids every
10-20 ms through a libpq multi-host string with target_session_attrs=read-write
(tests/integration/pg_writer.py, the writer of the fault tests). Per repetition:

- window: the longest gap between two acknowledged inserts ending after the fault;
- lost: acknowledged ids missing on the primary once the cluster is healthy again
  (the killed node restarted and rejoined as a replica);
- late: writes acknowledged by the old primary after the new one acknowledged one.

Installs what is missing: etcd and PostgreSQL (scripts/system-deps.sh), Patroni from
PyPI into its own virtual environment under --work-dir. Every process started is
stopped at the end, on failure or Ctrl-C too; the run's directory is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from etcd_fixtures import RunningCluster  # noqa: E402
from free_ports import port_block  # noqa: E402
from patroni_cluster import (  # noqa: E402
    PatroniCluster,
    ensure_patroni,
    postmaster_of,
)
from pg_cluster import Node, PgCluster  # noqa: E402
from pg_writer import Writer  # noqa: E402

from spofless.dcs import EtcdTls  # noqa: E402
from spofless.dcs.etcd_server import local_cluster  # noqa: E402
from spofless.pg._binaries import find_binaries  # noqa: E402
from spofless.pg._errors import PgSetupError  # noqa: E402
from spofless.security import (  # noqa: E402
    etcd_client_tls,
    etcd_member_tls,
    init_secrets,
    secrets_dir,
)
from spofless.topology import load_topology  # noqa: E402

FAULTS = ("kill-node", "kill-postmaster")
PATRONI_DEFAULTS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
PATRONI_TUNED = {"ttl": 20, "loop_wait": 1, "retry_timeout": 3}  # the least Patroni 4 accepts
SYSTEMS = ("spofless", "patroni-defaults", "patroni-tuned")
RESUME_BOUND = 120.0  # writes must resume within this (the writer itself stops at 180 s)
HEAL_BOUND = 180.0  # back to one primary and two streaming replicas within this


class BenchNode(Protocol):
    name: str
    pg_port: int

    def kill_node(self) -> None: ...
    def signal_postgres(self, sig: signal.Signals, postmaster: int | None = None) -> None: ...
    def wait_agent_exit(self, bound: float = 10.0) -> None: ...
    def start(self) -> None: ...
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...


class BenchCluster(Protocol):
    def multihost(self, **extra: str | int) -> str: ...
    def wait(self, check: Callable[[], bool], what: str, bound: float) -> None: ...
    def wait_healthy(self, bound: float = ...) -> Any: ...
    def stop(self) -> None: ...


class SafeNode(Node):
    """The fault tests' node, but a postmaster pid is checked against its command line:
    a stale postmaster.pid may name another process by now (pid_max can be 32768)."""

    def postmaster_pid(self) -> int | None:
        pid = postmaster_of(self.data_dir)
        if pid is not None:
            self.cluster.seen_postmasters.add(pid)
        return pid


class SpoflessCluster(PgCluster):
    """Three `spofless pg agent` processes at the topology's defaults (asynchronous)."""

    def __init__(self, base: Path, etcd_port: int, secrets: Path) -> None:
        base.mkdir(parents=True)
        super().__init__(base, etcd_port, synchronous=False)
        # The shared etcd's CA and client certificate: the agents reach it with them.
        with self.file.open("a") as f:
            f.write(f"security: {{secrets: {json.dumps(str(secrets))}}}\n")
        self.nodes = [SafeNode(self, i) for i in range(3)]


@dataclass
class Rep:
    window: float  # seconds; inf when writes did not resume within RESUME_BOUND
    lost: int
    late: int
    acked: int
    failed: int
    moved: str  # "db-0 -> db-1"


@dataclass
class Series:
    reps: list[Rep] = field(default_factory=list)
    error: str | None = None


def measure(cluster: BenchCluster, fault: str) -> Rep:
    """One repetition: healthy cluster, writer, fault, writes resume, node rejoins."""
    old: BenchNode = cluster.wait_healthy(HEAL_BOUND)
    first = int(old.query("SELECT coalesce(max(id), 0) FROM t")[0][0]) + 1000
    with Writer(cluster.multihost(), first_id=first) as writer:
        cluster.wait(lambda: writer.acks_since(0) > 20, "the writer writes", 30)
        time.sleep(random.uniform(0.5, 3.0))  # the fault lands anywhere in the agents' loops
        fault_at = time.monotonic()
        if fault == "kill-node":
            old.kill_node()
        else:
            old.signal_postgres(signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            cluster.wait(lambda: writer.acks_since(fault_at) > 50, "writes resume", RESUME_BOUND)
        report = writer.stop()
    resumed = len(report.acked_after(fault_at)) > 50
    if fault == "kill-node":
        old.wait_agent_exit()
        old.start()  # as a supervisor would: the old primary rejoins as a replica
    new: BenchNode = cluster.wait_healthy(HEAL_BOUND)
    present = {int(r[0]) for r in new.query("SELECT id FROM t WHERE id >= %s", (first,))}
    return Rep(
        window=report.window(fault_at) if resumed else float("inf"),
        lost=sum(1 for a in report.acks if a.id not in present),
        late=len(report.late_acks_by(old.pg_port, new.pg_port)),
        acked=len(report.acks),
        failed=report.failed,
        moved=f"{old.name} -> {new.name}",
    )


def ensure_system_deps() -> None:
    missing = shutil.which("etcd") is None
    try:
        find_binaries()
    except PgSetupError:
        missing = True
    if missing:
        print("installing etcd / PostgreSQL (scripts/system-deps.sh)", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "system-deps.sh")], check=True, timeout=900)


ETCD_TOPOLOGY = """\
name: bench
components:
  etcd: {{kind: etcd, instances: 3, port: {client}, peer_port: {peer}}}
entry: [etcd]
"""


@contextlib.contextmanager
def shared_etcd(base: Path) -> Iterator[tuple[int, Path]]:
    """A 3-member etcd on consecutive client ports, over TLS with client certificates as
    `spofless up` runs it (and a careful Patroni deployment would); yields the first port
    and the secrets directory whose CA and client certificate reach it."""
    client, peer = port_block(3), port_block(3)
    f = base / "etcd.yaml"
    f.write_text(ETCD_TOPOLOGY.format(client=client, peer=peer))
    topology = load_topology(f)
    init_secrets(topology)
    etcd = RunningCluster(
        local_cluster(
            base / "etcd",
            [client + i for i in range(3)],
            [peer + i for i in range(3)],
            tls=etcd_member_tls(topology, None),
        ),
        base,
        client_tls=etcd_client_tls(topology),
    )
    try:
        etcd.start()
        yield client, secrets_dir(topology)
    finally:
        etcd.stop_all()


def make_cluster(
    system: str, base: Path, etcd: tuple[int, Path], patroni: Path
) -> Any:  # fmt: skip
    etcd_port, secrets = etcd
    if system == "spofless":
        cluster = SpoflessCluster(base / system, etcd_port, secrets)
        cluster.make_secrets()  # scram and TLS, as in production
        return cluster
    dcs = PATRONI_DEFAULTS if system == "patroni-defaults" else PATRONI_TUNED
    tls = EtcdTls(
        ca=secrets / "ca.crt",
        cert=secrets / "clients" / "spofless.crt",
        key=secrets / "clients" / "spofless.key",
    )
    return PatroniCluster(base / system, patroni, find_binaries().bin_dir, etcd_port, dcs, tls)


def run_system(
    system: str, faults: list[str], reps: int, base: Path, etcd: tuple[int, Path],
    patroni: Path, deadline: float,
) -> dict[str, Series]:  # fmt: skip
    results = {f: Series() for f in faults}
    cluster = make_cluster(system, base, etcd, patroni)
    try:
        cluster.start()
        primary = cluster.wait_healthy(HEAL_BOUND)
        primary.query("CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        if isinstance(cluster, PatroniCluster):
            print(f"  {system}: effective {effective_patroni_config(primary.api)}", flush=True)
        for fault in faults:
            for i in range(reps):
                if time.monotonic() > deadline:
                    results[fault].error = "time budget exhausted"
                    break
                try:
                    rep = measure(cluster, fault)
                except Exception as exc:  # one system failing must not lose the others
                    results[fault].error = f"{type(exc).__name__}: {str(exc)[:3000]}"
                    print(f"  {system} {fault} rep {i + 1}: FAILED {results[fault].error}")
                    return results
                results[fault].reps.append(rep)
                print(
                    f"  {system:16} {fault:15} rep {i + 1}: window {rep.window:6.2f}s  "
                    f"lost {rep.lost:4}  late {rep.late}  acked {rep.acked:5}  "
                    f"failed attempts {rep.failed:5}  {rep.moved}",
                    flush=True,
                )
    except Exception as exc:
        for series in results.values():
            series.error = series.error or f"{type(exc).__name__}: {str(exc)[:3000]}"
        print(f"  {system}: FAILED {type(exc).__name__}: {str(exc)[:3000]}", flush=True)
    finally:
        cluster.stop()
    return results


def effective_patroni_config(api: str) -> str:
    import httpx

    try:
        c = httpx.get(f"{api}/config", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return "(unknown)"
    return ", ".join(f"{k} {c.get(k)}" for k in PATRONI_DEFAULTS)


def _fmt(x: float) -> str:
    return "not recovered" if x == float("inf") else f"{x:.2f}"


def _ratio(x: float, base: float) -> str:
    return f"{x / base:.1f}" if base and base != float("inf") and x != float("inf") else "-"


def table(results: dict[str, dict[str, Series]], faults: list[str]) -> str:
    lines = [
        "| Fault | System | Reps | Window median (s) | Window max (s) | x spofless (median) "
        "| x spofless (max) | Lost median | Lost max | Late acks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fault in faults:
        base = results.get("spofless", {}).get(fault)
        base_w = [r.window for r in base.reps] if base else []
        base_median = statistics.median(base_w) if base_w else 0.0
        base_max = max(base_w, default=0.0)
        for system, per_fault in results.items():
            s = per_fault[fault]
            if not s.reps:
                lines.append(f"| {fault} | {system} | 0 | - | - | - | - | - | - | - |")
                continue
            w = [r.window for r in s.reps]
            lost = [r.lost for r in s.reps]
            med = statistics.median(w)
            ratio = _ratio(med, base_median)
            ratio_max = _ratio(max(w), base_max)
            lines.append(
                f"| {fault} | {system} | {len(s.reps)} | {_fmt(med)} | {_fmt(max(w))} | {ratio} "
                f"| {ratio_max} "
                f"| {statistics.median(lost):g} | {max(lost)} | {sum(r.late for r in s.reps)} |"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reps", type=int, default=5, help="repetitions per system and fault")
    p.add_argument(
        "--quick", action="store_true", help="1 repetition, kill-node only, no Patroni defaults"
    )
    p.add_argument("--faults", default=",".join(FAULTS), help=f"subset of {','.join(FAULTS)}")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}")
    p.add_argument("--max-minutes", type=float, default=45, help="stop measuring after this")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path(__file__).resolve().parent / ".work",
        help="holds Patroni's virtual environment and, during the run, the clusters",
    )
    args = p.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    systems = [s for s in args.systems.split(",") if s]
    reps = args.reps
    if args.quick:
        faults, reps = ["kill-node"], 1
        systems = [s for s in systems if s != "patroni-defaults"]
    bad = [f for f in faults if f not in FAULTS] + [s for s in systems if s not in SYSTEMS]
    if bad or reps < 1:
        p.error(f"unknown fault or system {bad}, or --reps below 1")

    # SIGTERM/SIGHUP end the run like Ctrl-C: through every finally below (bounded), which
    # a second signal must not cut short.
    def interrupt(signum: int, frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    ensure_system_deps()
    patroni, patroni_version = ensure_patroni(args.work_dir)
    pg = find_binaries()
    etcd_version = subprocess.run(
        ["etcd", "--version"], capture_output=True, text=True, timeout=10
    ).stdout.splitlines()[0]
    load_start = os.getloadavg()
    print(
        f"{patroni_version}; PostgreSQL {pg.major} ({pg.bin_dir}); {etcd_version}; "
        f"{os.cpu_count()} CPUs; load average {load_start[0]:.2f} {load_start[1]:.2f}; "
        f"reps {reps}; faults {', '.join(faults)}",
        flush=True,
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    if os.geteuid() == 0:  # PostgreSQL runs as `postgres` and must reach its directories
        base.chmod(0o755)
    deadline = time.monotonic() + args.max_minutes * 60
    started = time.monotonic()
    results: dict[str, dict[str, Series]] = {}
    try:
        with shared_etcd(base) as etcd:
            for system in systems:
                print(f"{system}:", flush=True)
                results[system] = run_system(system, faults, reps, base, etcd, patroni, deadline)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load_end = os.getloadavg()
    print()
    print(table(results, faults))
    for system, per_fault in results.items():
        for fault, s in per_fault.items():
            if s.error:
                print(f"\n{system} {fault}: incomplete: {s.error[:300]}")
    print(
        f"\n{patroni_version}, PostgreSQL {pg.major}, {etcd_version}; load average "
        f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at the end "
        f"(5-min {load_end[1]:.2f}); {(time.monotonic() - started) / 60:.1f} min"
    )
    return 0 if all(not s.error for pf in results.values() for s in pf.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'SIGINT'}): every process stopped, run directory removed")
        sys.exit(130)
