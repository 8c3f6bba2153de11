"""Alerts sent once for the group, with real etcd and two `spofless monitor` processes.

The monitor that claims the notification is killed with kill -9 while its
webhook request is in flight (the receiver never answers it): the other
monitor takes the claim over once it expires and delivers the alert, once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from free_ports import port_block
from monitor_fixtures import WebhookSink, webhook_sink
from stack_fixtures import SPOFLESS, StackRun, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: claims
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
  node-3: {{address: 127.0.0.1}}
  watch-1: {{address: 127.0.0.1}}
  watch-2: {{address: 127.0.0.1}}
components:
  web:
    kind: service
    instances: [node-1, node-2]
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
    instances: [watch-1, watch-2]
    port: {monitor}
    claim_ttl: 3
    receivers:
      - {{type: webhook, url: "{url}", format: json, timeout: 0.5, retries: 1}}
entry: [web, etcd]
"""


@pytest.fixture
def claims(
    tmp_path: Path,
) -> Iterator[tuple[StackRun, WebhookSink, dict[int, subprocess.Popen[bytes]], int]]:
    with webhook_sink() as sink:
        taken: list[int] = []
        ports = {}
        for key, n in (("web", 2), ("etcd", 3), ("peer", 3), ("monitor", 2)):
            ports[key] = port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        path = tmp_path / "claims.yaml"
        path.write_text(TOPOLOGY.format(url=sink.url, **ports))
        monitors: dict[int, subprocess.Popen[bytes]] = {}
        try:
            with stack_run(path, tmp_path / "state") as run:
                yield run, sink, monitors, ports["monitor"]
        finally:
            for proc in monitors.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)


def start_monitor(run: StackRun, index: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                SPOFLESS,
                "monitor",
                str(run.topology),
                "--component",
                "monitor",
                "--instance",
                str(index),
                "--state-dir",
                str(run.state_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_monitor_killed_while_sending_loses_no_alert_and_none_is_doubled(
    claims: tuple[StackRun, WebhookSink, dict[int, subprocess.Popen[bytes]], int],
    tmp_path: Path,
) -> None:
    run, sink, monitors, monitor_port = claims
    hosts = ["--host", "node-1", "--host", "node-2", "--host", "node-3"]
    up = run.cli("up", *hosts, "--detach", "--wait", "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    for i in (0, 1):
        monitors[i] = start_monitor(run, i, tmp_path / f"monitor-{i}.log")

    import json
    import urllib.request

    def complete() -> bool:
        docs = []
        for i in (0, 1):
            try:
                url = f"http://127.0.0.1:{monitor_port + i}/status"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    docs.append(json.loads(resp.read()))
            except OSError:
                return False
        return all(d["complete"] and not d["alerts"] for d in docs)

    wait_for("both monitors see everything up", complete, timeout=60)
    time.sleep(1.0)  # what a start-up blip left pending (one monitor up before the other)
    start = len(sink.bodies())

    killed: list[str] = []

    def kill_the_sender(body: dict[str, Any]) -> float:
        # The first notification about web: kill -9 the monitor that sends it; it never learns
        # that the receiver got it, and the receiver does not count it (dropped).
        if not killed and body["alerts"][0]["component"] == "web":
            who = body["monitor"]
            killed.append(who)
            os.kill(monitors[int(who.rpartition("/")[2])].pid, signal.SIGKILL)
            return -1.0
        return 0.0

    sink.hold = kill_the_sender
    victim = run.instance("web/0")["pid"]
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)

    def about(component: str) -> list[dict[str, Any]]:
        return [b for b in sink.bodies()[start:] if b["alerts"][0]["component"] == component]

    wait_for("the alert from the surviving monitor", lambda: about("web"), timeout=30)
    took = (
        next(r.at for r in sink.received[start:] if r.body["alerts"][0]["component"] == "web")
        - killed_at
    )
    wait_for(
        "the resolved notification",
        lambda: any(b["status"] == "resolved" for b in about("web")),
        timeout=60,
    )
    time.sleep(2.0)  # a duplicate would have come by now
    bodies = about("web")
    assert killed, "the first notification never came"
    survivor = f"monitor/{1 - int(killed[0].rpartition('/')[2])}"
    assert [b["status"] for b in bodies] == ["firing", "resolved"], bodies
    assert {b["monitor"] for b in bodies} == {survivor}
    # And the survivor says that the alerting path lost a monitor.
    # (A loaded machine may add a blip of its own: look for this one.)
    lost = [b for b in about("monitor") if b["monitor"] == survivor and b["status"] == "firing"]
    assert [f"instance:{killed[0]}"] in [b["alerts"][0]["down"] for b in lost]
    firing = bodies[0]["alerts"][0]
    assert firing["component"] == "web" and firing["down"] == ["instance:web/0"]
    assert firing["live_spofs"] == [["instance:web/1"]] or ["host:node-2"] in firing["live_spofs"]
    print(f"kill -9 of web/0 -> alert after the sender died: {took:.3f}s (claim_ttl 3s)")
    assert took < 20.0  # a hang, not a timing claim
