"""Throughput and p99 of the load balancer's redis mode against twemproxy (nutcracker).

Usage (from the repository root, after `make .venv/.installed`; root to install
nutcracker when it is missing):

    .venv/bin/python benchmarks/cache_vs_twemproxy/run.py [--runs 3] [--requests 200000]

`spofless up` runs two cache shards (one Redis each, so that replication does not
share the two cores with the proxies) with a one-member etcd, and one load balancer
in mode redis with one worker. One nutcracker process is configured in front of the
same two Redis instances (ketama, the same shard count). redis-benchmark then sends
SET and GET with pipelining (`-P`, `-c` clients, random keys) to each proxy in
turn, `--runs` times alternating; the medians and the ratios spofless / twemproxy
are printed (throughput: higher is better, p99: lower is better). Everything it
starts is stopped at the end.
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


def bench(port: int, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """{test: (requests per second, p99 ms)} of one redis-benchmark run."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
         "-n", str(args.requests), "-c", str(args.clients), "-P", str(args.pipeline),
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
    p.add_argument("--pipeline", type=int, default=16)
    args = p.parse_args()
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
        results: dict[str, dict[str, list[tuple[float, float]]]] = {"spofless": {}, "twemproxy": {}}
        for _ in range(args.runs):
            for name, port in (("spofless", ports["lb"]), ("twemproxy", ports["tw"])):
                for test, figures in bench(port, args).items():
                    results[name].setdefault(test, []).append(figures)
        print(
            f"redis-benchmark -t set,get -n {args.requests} -c {args.clients} "
            f"-P {args.pipeline} -r 100000, {args.runs} runs alternating, medians"
        )
        print(f"{'test':5} {'proxy':10} {'req/s':>10} {'p99 ms':>8}")
        for test in results["spofless"]:
            med = {
                name: (
                    statistics.median(r for r, _ in results[name][test]),
                    statistics.median(q for _, q in results[name][test]),
                )
                for name in results
            }
            for name, (rps, p99) in med.items():
                print(f"{test:5} {name:10} {rps:10.0f} {p99:8.2f}")
            ratio = med["spofless"][0] / med["twemproxy"][0]
            print(f"{test:5} spofless/twemproxy throughput {ratio:.2f}x, p99 "
                  f"{med['spofless'][1] / med['twemproxy'][1]:.2f}x")  # fmt: skip
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
