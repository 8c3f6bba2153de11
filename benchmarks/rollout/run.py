"""Benchmark: a rolling restart of 4 web instances under steady HTTP load, spofless
against HAProxy driven through its runtime API as users script it today.

Run from the repository root (installs haproxy with apt-get when missing):

    .venv/bin/python benchmarks/rollout/run.py [--rate 30] [--work-ms 200] [--sleep 0.1] [--reps 1]
        [--web 4] [--surge N]

`--web 2 --surge 1` also rolls two instances with a temporary third (`rollout
--surge 1`) beside the same rollout without it (`--allow-spof`).

The web instances are `app.py` here: every request takes `--work-ms` (200 ms)
and SIGTERM ends the process at once, as an application without a graceful
shutdown does, so a request still in progress when it stops fails.

spofless: `spofless up` of 4 such web instances behind one spofless load
balancer, then `spofless rollout --component web` (drain until the workers
report no open request, replace, wait for the health check, readmit).

HAProxy: the same 4 web processes (started by this script) behind HAProxy
2.6 with health checks (inter 200 ms, rise 2, fall 2); for each server in turn:
`set server web/sN state drain`, a fixed sleep (`--sleep`, 0.1 s by default:
the preStop sleep, shorter than the work in flight), SIGTERM, start it again,
`set server web/sN state ready` once its port answers. That is the loop users
write around the runtime API.

Both get the same open-loop load: `--rate` requests per second over 8
keep-alive client connections, each request recorded with its latency. The
figures: failed requests during the restart, p99 latency during the restart
and at steady state before it, and the restart's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
SPOFLESS = str(Path(sys.executable).parent / "spofless")
WEB = 4
CLIENTS = 8

TOPOLOGY = """\
name: rollbench
hosts:
{hosts}
components:
  lb:
    kind: load_balancer
    instances: [h1]
    needs: [web]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web, health: {{type: http, path: /healthz, interval: 0.2, rise: 2, fall: 2}}}}]
  web:
    kind: service
    instances: [{web_hosts}]
    port: {web}
    run: {python} {app} --port {{port}} --name web-{{index}} --work-ms {work_ms}
    health: {{type: http, path: /healthz, interval: 0.2, rise: 2, fall: 2}}
entry: [lb]
"""


def topology(instances: int, **ports: object) -> str:
    """The benchmark's topology: `instances` web instances on hosts h1..hN, one spare host
    (where `--surge` puts its temporary instance)."""
    hosts = "\n".join(f"  h{i}: {{}}" for i in range(1, instances + 2))
    web_hosts = ", ".join(f"h{i}" for i in range(1, instances + 1))
    return TOPOLOGY.format(hosts=hosts, web_hosts=web_hosts, **ports)


HAPROXY = """\
global
  stats socket {sock} mode 600 level admin
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{port}
  default_backend web
backend web
  balance roundrobin
  option httpchk GET /healthz
{servers}
"""


def ensure_haproxy() -> None:
    if shutil.which("haproxy"):
        return
    print("installing haproxy with apt-get", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "haproxy"], check=True, env=env)


def free_block(n: int, avoid: set[int]) -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        ports = range(base, base + n)
        if base + n < 65000 and not avoid.intersection(ports) and all(_free(p) for p in ports):
            avoid.update(ports)
            return base
    raise RuntimeError("no free port block")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port(port: int, bound: float = 20.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"port {port} did not open within {bound:g}s")


@dataclass
class Load:
    """Open-loop GETs at `rate` per second over CLIENTS keep-alive connections."""

    port: int
    rate: float
    samples: list[tuple[float, float, bool]] = field(default_factory=list)  # (t, ms, ok)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self, offset: float) -> None:
        interval = CLIENTS / self.rate
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic() + offset
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            start = time.monotonic()
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            self.samples.append((start, (time.monotonic() - start) * 1000, ok))
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        for i in range(CLIENTS):
            t = threading.Thread(target=self._client, args=(i / self.rate,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def window(self, start: float, end: float) -> tuple[int, int, float]:
        """(requests, failed, p99 ms) of the requests started in [start, end)."""
        inside = [(ms, ok) for t, ms, ok in self.samples if start <= t < end]
        if not inside:
            return 0, 0, 0.0
        latencies = sorted(ms for ms, _ in inside)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return len(inside), sum(1 for _, ok in inside if not ok), p99


@dataclass
class Outcome:
    name: str
    steady_p99: float
    requests: int
    failed: int
    p99: float
    seconds: float


def spofless_run(tmp: Path, rate: float, steady: float, work_ms: float, surge: int = 0) -> Outcome:
    avoid: set[int] = set()
    web, lb, admin = free_block(WEB, avoid), free_block(1, avoid), free_block(1, avoid)
    file = tmp / "rollbench.yaml"
    file.write_text(
        topology(WEB, lb=lb, admin=admin, web=web, python=sys.executable, app=APP, work_ms=work_ms)
    )
    # Two instances: each step leaves the other alone unless a temporary one stands in.
    how = ["--surge", str(surge)] if surge else (["--allow-spof"] if WEB < 3 else [])
    state = ["--state-dir", str(tmp / "state")]
    rollout = [SPOFLESS, "rollout", str(file), *state, "--component", "web", *how]
    up = subprocess.run(
        [
            SPOFLESS,
            "up",
            str(file),
            *state,
            "--detach",
            "--wait",
            "--allow-spof",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if up.returncode != 0:
        raise RuntimeError(up.stdout + up.stderr)
    try:
        with Load(lb, rate) as load:
            time.sleep(steady)
            start = time.monotonic()
            r = subprocess.run(
                [*rollout, "--watch", "0.5"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            end = time.monotonic()
            time.sleep(1.0)
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)
    finally:
        subprocess.run([SPOFLESS, "down", str(file), *state], capture_output=True, timeout=120)
    _, _, steady_p99 = load.window(start - steady + 0.5, start)
    n, failed, p99 = load.window(start, end)
    name = "spofless rollout" + (f" --surge {surge}" if surge else " --allow-spof" * (WEB < 3))
    return Outcome(name, steady_p99, n, failed, p99, end - start)


def _admin(sock: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


@contextlib.contextmanager
def _web_processes(
    ports: list[int], work_ms: float
) -> Iterator[tuple[list[subprocess.Popen[bytes]], Callable[[int], subprocess.Popen[bytes]]]]:
    """The 4 web processes, and how to start instance i again."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(i: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, str(APP), "--port", str(ports[i]), "--name", f"web-{i}"]
        argv += ["--work-ms", str(work_ms)]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        procs.extend(start(i) for i in range(WEB))
        for p in ports:
            wait_port(p)
        yield procs, start
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
                if p.poll() is None:
                    p.kill()


def haproxy_run(tmp: Path, rate: float, steady: float, sleep: float, work_ms: float) -> Outcome:
    avoid: set[int] = set()
    web, port = free_block(WEB, avoid), free_block(1, avoid)
    ports = [web + i for i in range(WEB)]
    sock = tmp / "haproxy.sock"
    servers = "\n".join(
        f"  server s{i} 127.0.0.1:{p} check inter 200 rise 2 fall 2" for i, p in enumerate(ports)
    )
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY.format(sock=sock, port=port, servers=servers))
    with _web_processes(ports, work_ms) as (procs, start_web):
        hap = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            time.sleep(1.0)  # health checks pass rise times
            with Load(port, rate) as load:
                time.sleep(steady)
                start = time.monotonic()
                for i in range(WEB):
                    _admin(sock, f"set server web/s{i} state drain")
                    time.sleep(sleep)  # the fixed sleep users put before stopping
                    procs[i].terminate()
                    procs[i].wait(10)
                    procs[i] = start_web(i)
                    wait_port(ports[i])
                    _admin(sock, f"set server web/s{i} state ready")
                end = time.monotonic()
                time.sleep(1.0)
        finally:
            hap.terminate()
            hap.wait(10)
    _, _, steady_p99 = load.window(start - steady + 0.5, start)
    n, failed, p99 = load.window(start, end)
    return Outcome(
        f"HAProxy runtime API, sleep {sleep:g}s", steady_p99, n, failed, p99, end - start
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=30.0, help="requests per second")
    ap.add_argument("--work-ms", type=float, default=200.0, help="each request's time in the app")
    ap.add_argument(
        "--sleep", type=float, default=0.1, help="HAProxy: seconds between drain and stop"
    )
    ap.add_argument("--steady", type=float, default=3.0, help="seconds of load before the restart")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--web", type=int, default=4, help="web instances")
    ap.add_argument(
        "--surge",
        type=int,
        default=0,
        help="also run `spofless rollout --surge N` (a temporary instance on a spare host)",
    )
    args = ap.parse_args(argv)
    global WEB
    WEB = args.web
    ensure_haproxy()
    rows: list[Outcome] = []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="spofless-rollbench-") as d:
            rows.append(spofless_run(Path(d), args.rate, args.steady, args.work_ms))
        if args.surge:
            with tempfile.TemporaryDirectory(prefix="spofless-rollbench-") as d:
                rows.append(spofless_run(Path(d), args.rate, args.steady, args.work_ms, args.surge))
        with tempfile.TemporaryDirectory(prefix="spofless-rollbench-") as d:
            rows.append(haproxy_run(Path(d), args.rate, args.steady, args.sleep, args.work_ms))
    print(
        f"\n{args.rate:g} req/s over {CLIENTS} keep-alive connections, {WEB} web instances, "
        f"{args.work_ms:g} ms per request\n"
    )
    print("| run | steady p99 | requests | failed | p99 during | p99 / steady | restart |")
    print("|---|---|---|---|---|---|---|")
    for o in rows:
        ratio = o.p99 / o.steady_p99 if o.steady_p99 else float("nan")
        print(
            f"| {o.name} | {o.steady_p99:.1f} ms | {o.requests} | {o.failed} "
            f"| {o.p99:.1f} ms | {ratio:.1f}x | {o.seconds:.1f} s |"
        )
    ours = [o for o in rows if o.name.startswith("spofless")]
    ok = all(o.failed == 0 and o.p99 <= 2 * max(o.steady_p99, 1.0) for o in ours)
    print(f"\ntarget (spofless: 0 failed, p99 during <= 2x steady): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
