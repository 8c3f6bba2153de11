"""Benchmark: from a kill -9 to the webhook request, with the monitor's default settings.

Runs `spofless up` on a topology of a 3-member etcd, 2 demo web instances and 2
monitors whose one receiver is a webhook served here, then kills each etcd member
and each web instance in turn with SIGKILL (the supervisor restarts it), `--reps`
times (a minute apart, past the flap window), and records for each kill the time
until the firing alert reached the webhook and until the resolved one did. Prints
one line per kill, then the median and maximum per kind of victim. Target: < 1 s.
Run from the repository root: .venv/bin/python benchmarks/monitor_latency/run.py

Where the time goes, per kill, from the monitors' own events (`spofless events`,
the earliest of the two monitors): `seen` the victim's instance_down, `alert` the
alert_firing recorded, `sent` the notification_sent (after the webhook answered);
`webhook` is when the webhook got the request. seen -> alert is the analysis,
alert -> webhook the claim in etcd and the request.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from free_ports import port_block  # noqa: E402

SPOFLESS = str(Path(sys.executable).with_name("spofless"))

TOPOLOGY = """\
name: latency
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
  node-3: {{address: 127.0.0.1}}
components:
  web:
    kind: service
    instances: [node-1, node-2]
    needs: [etcd]
    port: {web}
    run: >-
      python -m spofless.demo.app --host {{host}} --port {{port}}
      --data {{state_dir}}/r.jsonl --name web-{{index}}
    health: {{type: http, path: /healthz}}
  etcd:
    kind: etcd
    instances: [node-1, node-2, node-3]
    min_up: majority
    port: {etcd}
    peer_port: {peer}
  monitor:
    kind: monitor
    instances: [node-1, node-2]
    port: {monitor}
    receivers:
      - {{type: webhook, url: "{url}"}}
entry: [web]
"""


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def alerts(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, a) for t, b in self.got for a in b["alerts"]]


def serve(sink: Sink) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.time()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with sink.lock:
                sink.got.append((at, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SPOFLESS, *args], capture_output=True, text=True, timeout=120)


def wait(what: str, predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def breakdown(out: subprocess.CompletedProcess[str], kills: list[tuple[str, float, float]]) -> None:
    """Per kill: when the monitors saw it, recorded the alert, sent it (from the kill)."""
    events = [json.loads(line) for line in out.stdout.splitlines()]

    def first(kill_at: float, kind: str, subject: str | None = None) -> str:
        ats = [
            e["at"]
            for e in events
            if e["kind"] == kind and e["at"] >= kill_at and subject in (None, e["subject"])
        ]
        return f"{min(ats) - kill_at:.3f}s" if ats else "-"

    print("where the time goes (from the kill; the earliest of the two monitors):")
    for victim, killed, hook in kills:
        print(
            f"  {victim}: seen {first(killed, 'instance_down', victim.split()[0])}, alert "
            f"{first(killed, 'alert_firing')}, webhook {hook - killed:.3f}s, sent "
            f"{first(killed, 'notification_sent')}"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", help="keep the state dir (the monitors' logs) here")
    opts = parser.parse_args()
    sink = Sink()
    server, url = serve(sink)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = opts.keep or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        ports: dict[str, int] = {}
        taken: list[int] = []
        for key, n in (("web", 2), ("etcd", 3), ("peer", 3), ("monitor", 2)):
            ports[key] = port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        path = Path(tmp) / "latency.yaml"
        path.write_text(TOPOLOGY.format(url=url, **ports))
        state = ["--state-dir", str(Path(tmp) / "state")]
        up = cli("up", str(path), *state, "--detach", "--wait", "--timeout", "90")
        if up.returncode != 0:
            print(up.stdout, up.stderr)
            return 1
        results: dict[str, list[tuple[float, float]]] = {}
        kills: list[tuple[str, float, float]] = []  # victim (etcd's leader marked), killed, hook
        try:
            time.sleep(3.0)  # start-up notifications, if any, are out
            for rep in range(opts.reps):
                if rep:
                    # The same instance killed again within flap_window (60 s) would be
                    # damped as flapping (its 4th change), not alerted: let the window pass.
                    time.sleep(60.0)
                for victim in ("etcd/0", "etcd/1", "etcd/2", "web/0", "web/1"):
                    doc = json.loads(cli("status", str(path), *state, "--json").stdout)
                    (inst,) = [i for i in doc["instances"] if i["name"] == victim]
                    # Whether the victim leads etcd (a write then waits for an election).
                    seen = json.loads(
                        urllib.request.urlopen(
                            f"http://127.0.0.1:{ports['monitor']}/status", timeout=5
                        ).read()
                    )["instances"][victim]
                    role = " (etcd's leader)" if seen.get("etcd_leader") else ""
                    before = len(sink.alerts())
                    killed = time.time()
                    os.kill(inst["pid"], signal.SIGKILL)

                    def since(status: str, before: int = before) -> list[float]:
                        return [t for t, a in sink.alerts()[before:] if a["status"] == status]

                    fired = wait("firing", lambda: since("firing"), 30)[0] - killed
                    resolved = wait("resolved", lambda: since("resolved"), 60)[0] - killed
                    kind = victim.split("/")[0] + (" leader" if role else "")
                    results.setdefault(kind, []).append((fired, resolved))
                    kills.append((victim + role, killed, killed + fired))
                    print(
                        f"rep {rep} kill -9 {victim}{role}: firing after {fired:.3f}s, resolved "
                        f"after {resolved:.3f}s",
                        flush=True,
                    )
                    time.sleep(2.0)
            breakdown(cli("events", str(path), *state, "--limit", "100000", "--json"), kills)
        finally:
            cli("down", str(path), *state)
            server.shutdown()
    for kind, pairs in results.items():
        fired = [f for f, _ in pairs]
        print(
            f"{kind}: {len(pairs)} kills, firing median {statistics.median(fired):.3f}s "
            f"max {max(fired):.3f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
