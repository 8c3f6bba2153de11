"""Benchmark: bulk tcp transfers through spofless lb (splice on and off) and HAProxy.

Run from the repository root (installs haproxy with apt-get when missing):

    .venv/bin/python benchmarks/lb_vs_haproxy/bulk.py [--gib 1] [--rounds 3]

A source process sends `--gib` GiB on every connection; a reader process
takes it through each balancer (one worker / `nbthread 1`, tcp mode) and
reports GB/s and the balancer's CPU seconds per GB (user + system, from
/proc). Contenders: spofless with `tcp_splice` on (the default) and off
(uvloop copying), HAProxy at its defaults (copying) and with
`option splice-request` and `option splice-response`. The best of `--rounds`
alternating runs counts; a transfer that arrives short stops the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from run import (
    cpu_seconds,
    ensure_tools,
    free_port,
    loadavg,
    process,
)

# Sends N bytes on every connection (a thread each), ignoring health-check connections.
SOURCE = textwrap.dedent(
    """
    import socket, sys, threading
    N = int(sys.argv[2])
    BLOCK = memoryview(b"x" * (1 << 20))
    def one(c):
        left = N
        try:
            while left > 0:
                left -= c.send(BLOCK[: min(left, len(BLOCK))])
        except OSError:
            pass
        c.close()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()
    """
)

# Reads one connection to its end; prints bytes and seconds.
READER = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    buf = bytearray(1 << 20)
    got = 0
    t = time.perf_counter()
    while n := s.recv_into(buf):
        got += n
    print(got, time.perf_counter() - t)
    """
)


def haproxy_config(port: int, backend: int, splice: bool) -> str:
    extra = "  option splice-request\n  option splice-response\n" if splice else ""
    return (
        "global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode tcp\n"
        "  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n"
        f"{extra}frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n"
        f"backend b\n  server s0 127.0.0.1:{backend} check inter 250\n"
    )


def command(name: str, port: int, backend: int, tmp: Path) -> list[str]:
    if name.startswith("spofless"):
        cmd = [str(Path(sys.executable).with_name("spofless")), "lb", "--mode", "tcp"]
        cmd += ["--listen", f"127.0.0.1:{port}", "--backend", f"127.0.0.1:{backend}"]
        return cmd + (["--set", "tcp_splice=false"] if name.endswith("copy") else [])
    cfg = tmp / f"{name}.cfg"
    cfg.write_text(haproxy_config(port, backend, splice=name.endswith("splice")))
    return ["haproxy", "-db", "-f", str(cfg)]


def transfer(port: int, pid: int, size: int) -> tuple[float, float]:
    """One download through `port`: (GB/s, balancer CPU seconds per GB)."""
    before = cpu_seconds(pid)
    out = subprocess.run(
        [sys.executable, "-c", READER, str(port)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    got, seconds = int(out[0]), float(out[1])
    if got != size:
        raise SystemExit(f"port {port}: {got} bytes arrived of {size}")
    used = cpu_seconds(pid) - before
    return got / seconds / 1e9, used / (got / 1e9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="GiB per transfer")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs; best counts")
    args = parser.parse_args()
    ensure_tools()
    size = int(args.gib * (1 << 30))
    names = ["spofless splice", "spofless copy", "haproxy", "haproxy splice"]
    print(f"load average (1 min) at start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_, contextlib.ExitStack() as stack:
        tmp = Path(tmp_)
        src = free_port()
        cmd = [sys.executable, "-c", SOURCE, str(src), str(size)]
        stack.enter_context(process(cmd, src, tmp / "source.log"))
        ports: dict[str, tuple[int, int]] = {}
        for name in names:
            port = free_port()
            log = tmp / f"{name.replace(' ', '-')}.log"
            proc = stack.enter_context(process(command(name, port, src, tmp), port, log))
            ports[name] = (port, proc.pid)
        time.sleep(1.0)  # health checks pass
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name in names:
                gbps, cpu = transfer(*ports[name], size)
                print(f"{name:20s} {gbps:5.2f} GB/s  {cpu:.3f} CPU s/GB", flush=True)
                if name not in best or gbps > best[name][0]:
                    best[name] = (gbps, cpu)
    print()
    print("| balancer | GB/s | CPU s per GB | CPU per GB vs HAProxy default |")
    print("|---|---|---|---|")
    ref = best["haproxy"][1]
    for name in names:
        gbps, cpu = best[name]
        print(f"| {name} | {gbps:.2f} | {cpu:.3f} | {cpu / ref:.2f}x |")
    print(f"\nload average (1 min) at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
