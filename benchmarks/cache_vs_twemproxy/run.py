"""Throughput and p99 of the load balancer's redis mode against twemproxy (nutcracker).

Usage (from the repository root, after `make .venv/.installed`; root to install
nutcracker when it is missing):

    nice -n -5 .venv/bin/python benchmarks/cache_vs_twemproxy/run.py [--runs 3] \
        [--requests 200000] [--pipelines 16,1]

`spofless up` runs two cache shards (one Redis each, so that replication does not
share the two cores with the proxies) with a one-member etcd, and one load balancer
in mode redis with one worker. One nutcracker process is configured in front of the
same two Redis instances (ketama, the same shard count). redis-benchmark then sends
SET and GET (`-c` clients, random keys), at each pipeline depth of `--pipelines`
(`-P`), to each proxy in turn, `--runs` times alternating. Printed per test: the
medians of requests per second and p99, and the ratio spofless / twemproxy of each
run's throughput (measured back to back), median and worst (throughput: higher is
better, p99: lower is better). `nice -n -5` gives everything it starts (both
proxies, Redis, redis-benchmark) the same head start on a shared machine.
Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SPOFLESS = str(Path(sys.executable).parent / "spofless")

TOPOLOGY = """name: cache-bench
hosts: {{h1: {{}}}}
components:
  lb:
    kind: load_balancer
    instances: [h1]
    mode: redis
    port: {lb}
    workers: 1
    routes: [{{to: shard-a}}, {{to: shard-b}}]
  shard-a: {{kind: cache, instances: [h1], port: {a}, api_port: {a_api}}}
  shard-b: {{kind: cache, instances: [h1], port: {b}, api_port: {b_api}}}
  etcd: {{kind: etcd, instances: [h1], port: {etcd}, peer_port: {peer}}}
entry: [lb]
"""

NUTCRACKER = """bench:
  listen: 127.0.0.1:{port}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  preconnect: true
  auto_eject_hosts: false
  servers:
    - 127.0.0.1:{a}:1 shard-a
    - 127.0.0.1:{b}:1 shard-b
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_nutcracker() -> str:
    found = shutil.which("nutcracker") or (
        "/usr/sbin/nutcracker" if Path("/usr/sbin/nutcracker").exists() else None
    )
    if found:
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nutcracker"],
        check=True, timeout=600,
    )  # fmt: skip
    return "/usr/sbin/nutcracker"


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout:g}s")


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU time used so far by `procs`."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def lb_processes(topo: Path) -> list[psutil.Process]:
    """The load balancer's controller and its workers (the processes of `spofless lb`)."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if str(topo) in cmd and "lb" in cmd and "--component" in cmd:
            return [p, *p.children()]
    raise SystemExit("the load balancer's processes were not found")


def bench(port: int, args: argparse.Namespace, pipeline: int) -> dict[str, tuple[float, float]]:
    """{test: (requests per second, p99 ms)} of one redis-benchmark run."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
         "-n", str(args.requests), "-c", str(args.clients), "-P", str(pipeline),
         "-r", "100000", "--csv"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    return {r["test"]: (float(r["rps"]), float(r["p99_latency_ms"])) for r in rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--pipelines", default="16,1", help="pipeline depths (-P), comma-separated")
    args = p.parse_args()
    pipelines = [int(x) for x in args.pipelines.split(",")]
    nutcracker = ensure_nutcracker()
    base = Path(tempfile.mkdtemp(prefix="spofless-cache-bench-"))
    ports = {
        k: free_port() for k in ("lb", "a", "a_api", "b", "b_api", "etcd", "peer", "tw", "tw_stats")
    }
    topo = base / "cache-bench.yaml"
    topo.write_text(TOPOLOGY.format(**ports))
    conf = base / "nutcracker.yml"
    conf.write_text(NUTCRACKER.format(port=ports["tw"], a=ports["a"], b=ports["b"]))
    state = ["--state-dir", str(base / "state")]
    tw: subprocess.Popen[bytes] | None = None
    try:
        up = subprocess.run(
            [SPOFLESS, "up", str(topo), *state, "--detach", "--wait", "--allow-spof"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if up.returncode != 0:
            raise SystemExit(up.stdout + up.stderr)
        tw = subprocess.Popen(
            [
                nutcracker,
                "-c",
                str(conf),
                "-o",
                str(base / "nutcracker.log"),
                "-s",
                str(ports["tw_stats"]),
                "-a",
                "127.0.0.1",
                "-p",
                str(base / "nutcracker.pid"),
            ]
        )
        wait_port(ports["tw"])
        time.sleep(2)  # the lb's health checks have found both primaries
        procs = {"spofless": lb_processes(topo), "twemproxy": [psutil.Process(tw.pid)]}
        # {(pipeline, test): {proxy: [(rps, p99) per run]}}
        results: dict[tuple[int, str], dict[str, list[tuple[float, float]]]] = {}
        # {pipeline: {proxy: [CPU microseconds per request, per run]}}: what each
        # request costs the proxy, which the other load on a shared machine hardly moves.
        cpu: dict[int, dict[str, list[float]]] = {}
        for _ in range(args.runs):
            for pipeline in pipelines:
                for name, port in (("spofless", ports["lb"]), ("twemproxy", ports["tw"])):
                    before = cpu_seconds(procs[name])
                    for test, figures in bench(port, args, pipeline).items():
                        results.setdefault((pipeline, test), {}).setdefault(name, []).append(
                            figures
                        )
                    used = cpu_seconds(procs[name]) - before
                    per_request = used / (2 * args.requests) * 1e6
                    cpu.setdefault(pipeline, {}).setdefault(name, []).append(per_request)
        print(
            f"redis-benchmark -t set,get -n {args.requests} -c {args.clients} "
            f"-P {args.pipelines} -r 100000, {args.runs} runs alternating"
        )
        print(
            f"{'-P':>3} {'test':4} {'spofless req/s':>15} {'twemproxy req/s':>16} "
            f"{'ratio median':>12} {'ratio worst':>11} {'spofless p99':>12} "
            f"{'twemproxy p99':>13} {'p99 worst':>9}"
        )
        for (pipeline, test), by in results.items():
            s, t = by["spofless"], by["twemproxy"]
            ratios = [a[0] / b[0] for a, b in zip(s, t, strict=True)]
            print(
                f"{pipeline:3} {test:4} {statistics.median(r for r, _ in s):15,.0f} "
                f"{statistics.median(r for r, _ in t):16,.0f} "
                f"{statistics.median(ratios):11.2f}x {min(ratios):10.2f}x "
                f"{statistics.median(q for _, q in s):9.1f} ms "
                f"{statistics.median(q for _, q in t):10.1f} ms "
                f"{max(q for _, q in s):6.1f} ms"
            )
        print("proxy CPU per request (user + system, SET and GET), medians:")
        for pipeline, by in cpu.items():
            mine, theirs = statistics.median(by["spofless"]), statistics.median(by["twemproxy"])
            print(
                f"-P {pipeline:2}: spofless {mine:.2f} us, twemproxy {theirs:.2f} us, "
                f"spofless/twemproxy {mine / theirs:.2f}x"
            )
    finally:
        if tw is not None:
            tw.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                tw.wait(10)
            if tw.poll() is None:
                tw.kill()
        subprocess.run([SPOFLESS, "down", str(topo), *state], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
