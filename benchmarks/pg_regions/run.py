"""Benchmark: one PostgreSQL cluster spanning three regions, in the lab, 30 ms apart.

Run as root from the repository root:

    .venv/bin/python benchmarks/pg_regions/run.py [--inserts 300] [--latency 30]

Three regions, one PostgreSQL member and one etcd member in each, and an
application host in each of the first two regions; every host is its own network namespace,
and each crossing between two regions adds `--latency` ms one way (netem), so a
round trip between regions is twice that. scram-sha-256 and TLS are on.

For `synchronous: true` and `synchronous: false` it measures, from the
application host in r1, the latency of single-row INSERT commits (one connection,
one transaction each), p50 and p99. Then, with synchronous replication, it cuts
the primary's whole region under a writer and reports how long writes stopped,
how long until a member of another region took over, and the acknowledged writes
lost (the set checker of spofless.drill).

The lease and loop timings are a wide-area cluster's (`ttl: 10`, `loop_wait: 1`):
at 60 ms round trips the defaults meant for one data centre make renewals miss.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPOFLESS = str(Path(sys.executable).parent / "spofless")
CLIENT = str(HERE / "client.py")

TOPOLOGY = """\
name: pgregions
regions:
  r1: {{zones: [a]}}
  r2: {{zones: [a]}}
  r3: {{zones: [a]}}
hosts:
  etcd1: {{zone: r1/a}}
  etcd2: {{zone: r2/a}}
  etcd3: {{zone: r3/a}}
  db1: {{zone: r1/a}}
  db2: {{zone: r2/a}}
  db3: {{zone: r3/a}}
  app1: {{zone: r1/a}}
  app2: {{zone: r2/a}}
lab:
  links:
    zone: {{latency_ms: 0}}
    region: {{latency_ms: {latency}}}
components:
  etcd:
    kind: etcd
    instances: [etcd1, etcd2, etcd3]
    min_up: majority
    port: 2379
    peer_port: 2400
  db:
    kind: postgres
    instances: [db1, db2, db3]
    needs: [etcd]
    port: 5432
    api_port: 8008
    synchronous: {synchronous}
    ttl: 10
    loop_wait: 1
  app:
    kind: service
    instances: [app1, app2]
    needs: [db]
    port: 8000
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name app-{{index}}
entry: [db]
"""


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SPOFLESS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def status(file: Path, state: Path) -> list[dict[str, Any]]:
    out = cli("status", str(file), "--state-dir", str(state), "--json", timeout=60)
    instances: list[dict[str, Any]] = json.loads(out.stdout)["instances"]
    return instances


def whole(file: Path, state: Path) -> dict[str, Any] | None:
    db = [i for i in status(file, state) if i["component"] == "db"]
    if sorted(str(i["role"]) for i in db) != ["primary", "replica", "replica"]:
        return None
    return next(i for i in db if i["role"] == "primary")


def wait(what: str, predicate: Any, bound: float) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"not within {bound:g}s: {what}")


def conninfo(file: Path, members: list[str]) -> str:
    from spofless.security import client_params
    from spofless.topology import load_topology

    auth = client_params(load_topology(file), "db")
    params = {
        "host": ",".join(m.rpartition(":")[0] for m in members),
        "port": ",".join(m.rpartition(":")[2] for m in members),
        "user": "postgres",
        "dbname": "postgres",
        "connect_timeout": "3",
        "target_session_attrs": "read-write",
        **auth,
    }
    return " ".join(f"{k}={v}" for k, v in params.items())


def in_app(file: Path, *args: str, timeout: float = 300) -> str:
    out = cli(
        "lab", "exec", str(file), "app1", "--", sys.executable, CLIENT, *args, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"client on the app host: {out.stderr[-2000:]}")
    return out.stdout


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def one_run(
    base: Path, latency: float, synchronous: bool, inserts: int, cut: bool
) -> dict[str, Any]:
    file = base / "pgregions.yaml"
    file.write_text(TOPOLOGY.format(latency=latency, synchronous=str(synchronous).lower()))
    state = base / "state"
    os.environ["SPOFLESS_LAB_STATE_DIR"] = str(base / "labstate")
    try:
        up = cli(
            "up",
            str(file),
            "--state-dir",
            str(state),
            "--lab",
            "--detach",
            "--wait",
            "--allow-spof",
            "--timeout",
            "240",
            timeout=400,
        )
        if up.returncode != 0:
            raise RuntimeError(up.stdout + up.stderr)
        primary = wait("one primary and two streaming replicas", lambda: whole(file, state), 180)
        db = {i["host"]: i["address"] for i in status(file, state) if i["component"] == "db"}
        dsn = conninfo(file, [db[h] for h in ("db1", "db2", "db3")])
        in_app(file, "--create", dsn)
        latencies = json.loads(in_app(file, "--latency", dsn, str(inserts)))
        result: dict[str, Any] = {
            "synchronous": synchronous,
            "primary": primary["host"],
            "p50_ms": statistics.median(latencies),
            "p99_ms": percentile(latencies, 0.99),
        }
        if cut:
            result.update(cut_primary_region(file, state, dsn, primary))
        return result
    finally:
        keep = os.environ.get("SPOFLESS_KEEP_LOGS")
        if keep:
            shutil.copytree(state / "logs", Path(keep) / f"{base.name}-logs", dirs_exist_ok=True)
        cli("down", str(file), "--state-dir", str(state), timeout=240)
        subprocess.run([SPOFLESS, "lab", "down", str(file)], capture_output=True, timeout=120)


def cut_primary_region(
    file: Path, state: Path, dsn: str, primary: dict[str, Any]
) -> dict[str, Any]:
    """Cut the primary's region under a writer on an application host of another region
    (PostgreSQL lets in only the hosts of what needs it: app1 in r1, app2 in r2)."""
    region = {"db1": "r1", "db2": "r2", "db3": "r3"}[primary["host"]]
    ready = state / "writer-ready"
    writer = subprocess.Popen(
        [
            SPOFLESS,
            "lab",
            "exec",
            str(file),
            "app2" if region == "r1" else "app1",
            "--",
            sys.executable,
            CLIENT,
            "--write",
            dsn,
            "120",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait("the writer acknowledged", ready.exists, 60)
        time.sleep(3)
        cut_at = time.time()
        subprocess.run(
            [SPOFLESS, "lab", "fault", str(file), "cut", f"region:{region}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        new = wait(
            "a primary in another region",
            lambda: next(
                (
                    i
                    for i in status(file, state)
                    if i["component"] == "db"
                    and i["role"] == "primary"
                    and i["host"] != primary["host"]
                ),
                None,
            ),
            120,
        )
        took_over = time.time() - cut_at
        out, err = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
    if writer.returncode != 0:
        raise RuntimeError(err[-2000:])
    report = json.loads(out)
    acks = [t for t in report["acks_at"] if t > cut_at - 60]
    after = [t for t in acks if t > cut_at]
    before = [t for t in acks if t <= cut_at]
    pause = (after[0] - before[-1]) if after and before else float("nan")
    resumed = (after[0] - cut_at) if after else float("nan")
    subprocess.run(
        [SPOFLESS, "lab", "fault", str(file), "restore"], capture_output=True, timeout=60
    )
    wait("the old primary back as a replica", lambda: whole(file, state), 180)
    from spofless.drill import check_data

    held = {}
    for inst in status(file, state):
        if inst["component"] == "db":
            one = conninfo(file, [inst["address"]]).replace("target_session_attrs=read-write", "")
            held[inst["host"]] = set(json.loads(in_app(file, "--ids", one)))
    now = whole(file, state)
    assert now is not None
    verdict = check_data(
        report["attempted"], report["acknowledged"], report["uncertain"], now["host"], held
    )
    return {
        "cut_region": region,
        "new_primary": new["host"],
        "takeover_s": took_over,
        "write_pause_s": pause,
        "writes_resumed_s": resumed,
        "acknowledged": verdict.acknowledged,
        "lost": len(verdict.lost),
        "divergent": len(verdict.divergent),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--inserts", type=int, default=300)
    ap.add_argument("--latency", type=float, default=30.0, help="one way, between regions (ms)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    rows = []
    for synchronous in (False, True):
        base = Path(tempfile.mkdtemp(prefix="spofless-pgregions-"))
        base.chmod(0o755)
        try:
            rows.append(one_run(base, args.latency, synchronous, args.inserts, cut=synchronous))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    rtt = 2 * args.latency
    print(
        f"\nthree regions, {args.latency:g} ms one way between regions ({rtt:g} ms round trip), "
        f"{args.inserts} single-row commits from a host in r1\n"
    )
    print("| replication | primary | commit p50 | commit p99 |")
    print("|---|---|---|---|")
    for r in rows:
        mode = "synchronous" if r["synchronous"] else "asynchronous"
        print(f"| {mode} | {r['primary']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
    cut = next(r for r in rows if r["synchronous"])
    print(
        f"\ncut of region {cut['cut_region']} (the primary's) under a writer in another region: "
        f"{cut['new_primary']} primary (seen by `status`) after {cut['takeover_s']:.1f} s, "
        f"writes resumed after {cut['writes_resumed_s']:.1f} s (paused "
        f"{cut['write_pause_s']:.1f} s), {cut['acknowledged']} acknowledged, {cut['lost']} lost, "
        f"{cut['divergent']} divergent members"
    )
    return 0 if cut["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
