"""A starved monitor raises no false alarm, and still finds a killed instance at once.

A real stack (web: two demo apps, one etcd member) and a real `spofless
monitor` process. The `slow` service's instances are answered by this test's
own HTTP server: when slow/0's health check arrives, the test SIGSTOPs the monitor
for 3 s (its look is then in flight, for sure), SIGCONTs it and answers after its
timer has fired. Three rounds in a row: with `fall: 2` the monitor would call
slow/0 down and alert; it must see its own lateness instead, count the looks as
unknown, say it was starved and raise nothing. Then web/0 is killed with kill -9:
down in one look (connection refused) and alerted, and back (the supervisor
restarts it), resolved.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from free_ports import port_block
from monitor_fixtures import WebhookSink, webhook_sink
from stack_fixtures import SPOFLESS, StackRun, stack_run
from waiting import wait_for

from spofless.monitor._probe import Target, http_client, probe
from spofless.topology import load_topology_text

pytestmark = pytest.mark.integration

STOPS = 3  # rounds in a row during which the monitor is stopped
STOP_FOR = 3.0  # seconds per stop

TOPOLOGY = """\
name: starved
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
  ext-1: {{address: 127.0.0.1}}
  ext-2: {{address: 127.0.0.1}}
  watch-1: {{address: 127.0.0.1}}
components:
  web:
    kind: service
    instances: [node-1, node-2]
    port: {web}
    run: >-
      python -m spofless.demo.app --host {{host}} --port {{port}}
      --data {{state_dir}}/r.jsonl --name web-{{index}}
    health: {{type: http, path: /healthz}}
  slow:  # answered by the test's own server: `up` does not start hosts ext-*
    kind: service
    instances: [ext-1, ext-2]
    port: {slow}
    run: "true"
    health: {{type: http, path: /healthz}}
  etcd: {{kind: etcd, instances: [node-1], port: {etcd}, peer_port: {peer}}}
  monitor:
    kind: monitor
    instances: [watch-1]
    port: {monitor}
    receivers:
      - {{type: webhook, url: "{url}", format: json, timeout: 0.5, retries: 1}}
entry: [web, slow]
"""


@dataclass
class SlowServer:
    """Answers slow/0 and slow/1's health checks; while `stops` > 0 and `pid` is set, a
    check of slow/0 stops that process for STOP_FOR seconds before it is answered."""

    first_port: int = 0  # slow/0's
    pid: int = 0
    stops: int = 0
    stopped: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def starve(self, port: int) -> None:
        with self.lock:
            if not self.pid or self.stops <= 0 or port != self.first_port:
                return
            self.stops -= 1
        os.kill(self.pid, signal.SIGSTOP)
        try:
            time.sleep(STOP_FOR)
        finally:
            os.kill(self.pid, signal.SIGCONT)
        self.stopped.append(time.time())
        time.sleep(0.3)  # its timer fires first: the look timed out


@contextlib.contextmanager
def slow_servers(base: int) -> Iterator[SlowServer]:
    slow = SlowServer(first_port=base)

    def handler(port: int) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                slow.starve(port)
                with contextlib.suppress(OSError):  # the look gave up on it: gone
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    servers = [ThreadingHTTPServer(("127.0.0.1", base + i), handler(base + i)) for i in (0, 1)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield slow
    finally:
        slow.stops = 0
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def stack(
    tmp_path: Path,
) -> Iterator[tuple[StackRun, WebhookSink, SlowServer, list[subprocess.Popen[bytes]], int]]:
    with webhook_sink() as sink:
        taken: list[int] = []
        ports = {}
        for key, n in (("web", 2), ("slow", 2), ("etcd", 1), ("peer", 1), ("monitor", 1)):
            ports[key] = port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        path = tmp_path / "starved.yaml"
        path.write_text(TOPOLOGY.format(url=sink.url, **ports))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            with slow_servers(ports["slow"]) as slow, stack_run(path, tmp_path / "state") as run:
                yield run, sink, slow, procs, ports["monitor"]
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                proc.wait(timeout=10)


def status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except OSError:
        return None


def test_a_starved_monitor_raises_no_false_alarm_and_still_finds_a_kill(
    stack: tuple[StackRun, WebhookSink, SlowServer, list[subprocess.Popen[bytes]], int],
    tmp_path: Path,
) -> None:
    run, sink, slow, procs, port = stack
    up = run.cli("up", "--host", "node-1", "--host", "node-2", "--detach", "--wait")
    assert up.returncode == 0, up.stdout + up.stderr
    log = tmp_path / "monitor.log"
    with log.open("wb") as out:
        args = ["--component", "monitor", "--instance", "0", "--state-dir", str(run.state_dir)]
        procs.append(
            subprocess.Popen(
                [SPOFLESS, "monitor", str(run.topology), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )

    def all_up() -> bool:
        doc = status(port)
        return (
            doc is not None
            and doc["complete"]
            and not doc["alerts"]
            and all(v["state"] == "up" for v in doc["instances"].values())
        )

    wait_for("the monitor sees everything up", all_up, timeout=60)
    time.sleep(1.0)  # what a start-up blip left pending
    start = len(sink.bodies())
    before = status(port)
    assert before is not None and before["unknown_looks"] == 0

    # Starvation in its purest form: SIGSTOP while its looks are in flight, STOPS rounds.
    slow.pid, slow.stops = procs[0].pid, STOPS
    wait_for("the monitor stopped and continued", lambda: len(slow.stopped) == STOPS, 60)
    wait_for("the monitor answers again", lambda: status(port) is not None, timeout=10)
    doc = status(port)
    assert doc is not None
    kinds = [(e["kind"], e["subject"]) for e in doc["events"]]
    assert not [k for k in kinds if k[0] in ("instance_down", "flapping")], kinds
    assert ("monitor_starved", "monitor/0") in kinds
    assert doc["unknown_looks"] >= STOPS, doc["unknown_looks"]
    assert all_up(), doc["instances"]
    wait_for(
        "it says it is no longer starved",
        lambda: any(
            e["kind"] == "monitor_starved_ended" for e in (status(port) or {"events": []})["events"]
        ),
        timeout=30,
    )
    time.sleep(1.0)  # a notification would have gone by now (group_wait 0)
    assert sink.bodies()[start:] == []
    text = log.read_text()
    assert "monitor/0 is starved" in text and "monitor/0 is no longer starved" in text

    # A real kill is still found in one look and alerted.
    os.kill(run.instance("web/0")["pid"], signal.SIGKILL)

    def web_alerts(state: str) -> list[dict[str, Any]]:
        return [
            a
            for b in sink.bodies()[start:]
            for a in b["alerts"]
            if a["component"] == "web" and b["status"] == state
        ]

    wait_for("the alert about web", lambda: web_alerts("firing"), timeout=30)
    assert web_alerts("firing")[0]["down"] == ["instance:web/0"]
    doc = status(port)
    assert doc is not None
    (down,) = [e for e in doc["events"] if e["kind"] == "instance_down"]
    assert down["subject"] == "web/0"
    # Back to full redundancy by itself: the supervisor restarts web/0.
    wait_for("the resolved notification", lambda: web_alerts("resolved"), timeout=60)
    wait_for("everything up again", all_up, timeout=30)


async def test_a_look_that_times_out_says_so() -> None:
    """A real listening socket that never answers: the look times out and says so."""
    t = load_topology_text(
        "name: t\nsecurity: {tls: false}\ncomponents:\n"
        "  m: {kind: monitor, instances: 1, port: 9600}\nentry: [m]\n"
    )
    (inst,) = t.all_instances()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepted by the kernel, never answered
        target = Target(inst, "monitor", "127.0.0.1", listener.getsockname()[1])
        async with http_client() as client:
            obs = await probe(target, 0.2, client)
    assert not obs.ok and obs.timed_out and not obs.definite
