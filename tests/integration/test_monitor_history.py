"""What the monitors record over time, in a stack `spofless up` runs: the gauges (a load
balancer's requests and latency under real traffic, CPU and memory of real processes),
a crash loop from the supervisor's restarts, and etcd's quorum at risk when a member of
three is killed -9, once, resolved when the supervisor has it back; both reach a real
webhook once for the two monitors, and their resolutions too."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from free_ports import port_block
from monitor_fixtures import WebhookSink, webhook_sink
from stack_fixtures import StackRun, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: recorded
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
  node-3: {{address: 127.0.0.1}}
components:
  web:
    kind: service
    instances: [node-1, node-2]
    port: {web}
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz}}
  lb:
    kind: load_balancer
    instances: [node-1, node-2]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web}}]
  # Not needed by anything: its first three runs exit after 11 s, and its supervisor
  # restarts each 0.5 s later (a run over fast_exit, 10 s, is not a fast exit: the
  # supervisor's own rule never gives up on it); the fourth runs on. Three restarts
  # within crash_window: the monitors' rule; a whole window without one ends the loop.
  crashy:
    kind: service
    instances: [node-3]
    run: >-
      sh -c 'n=$(cat {{state_dir}}/crashy.runs 2>/dev/null || echo 0);
      echo $((n + 1)) > {{state_dir}}/crashy.runs;
      if [ $n -lt 3 ]; then sleep 11; exit 3; fi; exec sleep 3600'
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
    gauge_interval: 1
    crash_restarts: 3
    crash_window: 40
    receivers:
      # Loopback and a receiver that answers at once: one attempt is one request.
      - {{type: webhook, name: hook, url: "{url}", timeout: 5, retries: 1}}
entry: [lb]
"""


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.read()  # type: ignore[no-any-return]


def status(port: int) -> dict[str, Any]:
    return json.loads(get(f"http://127.0.0.1:{port}/status"))  # type: ignore[no-any-return]


def events(run: StackRun) -> list[dict[str, Any]]:
    out = run.cli("events", "--limit", "1000", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[StackRun, dict[str, int], WebhookSink]]:
    taken: list[int] = []
    ports = {}
    for key, n in (("web", 2), ("lb", 2), ("admin", 2), ("etcd", 3), ("peer", 3), ("monitor", 2)):
        ports[key] = port_block(n, taken)
        taken += range(ports[key], ports[key] + n)
    path = tmp_path / "recorded.yaml"
    with webhook_sink() as sink:
        path.write_text(TOPOLOGY.format(url=sink.url, **ports))
        with stack_run(path, tmp_path / "state") as run:
            yield run, ports, sink


def named(sink: WebhookSink, alertname: str, status: str) -> list[dict[str, Any]]:
    return [a for a in sink.alerts(status) if a["labels"]["alertname"] == alertname]


def test_gauges_crash_loop_and_etcd_quorum(
    recorded: tuple[StackRun, dict[str, int], WebhookSink],
) -> None:
    run, ports, sink = recorded
    up = run.cli("up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    monitor = ports["monitor"]

    def seen_up(*names: str) -> bool:
        try:
            doc = status(monitor)
        except OSError:
            return False
        return doc["complete"] and all(doc["instances"][n]["state"] == "up" for n in names)

    wait_for(
        "the monitor sees the stack up",
        lambda: seen_up("etcd/0", "etcd/1", "etcd/2", "lb/0", "web/0", "web/1"),
        timeout=90,
    )

    # Real traffic through lb/0, bounded: its request rate and latency are recorded.
    deadline = time.monotonic() + 4.0
    sent = 0
    while time.monotonic() < deadline and sent < 2000:
        get(f"http://127.0.0.1:{ports['lb']}/")
        sent += 1

    def gauges() -> dict[str, dict[str, float]]:
        return status(monitor)["gauges"]  # type: ignore[no-any-return]

    wait_for("lb/0's requests recorded", lambda: gauges().get("lb/0", {}).get("requests"), 15)
    history = json.loads(get(f"http://127.0.0.1:{monitor}/gauges"))["series"]
    assert max(v for _, v in history["lb/0"]["requests"]) > 0
    p99 = max(v for _, v in history["lb/0"]["latency_p99"])
    assert 0 < p99 < 5.0
    # CPU and memory of real processes, from the supervisor's pids.
    etcd0 = history["etcd/0"]
    assert max(v for _, v in etcd0["memory"]) > 1 << 20  # an etcd member: megabytes
    assert "cpu" in etcd0 and min(v for _, v in etcd0["cpu"]) >= 0

    # The crash loop: restarted 3 times within the window.
    def kinds(kind: str, subject: str) -> list[dict[str, Any]]:
        return [e for e in events(run) if e["kind"] == kind and e["subject"] == subject]

    wait_for("a crash loop", lambda: kinds("crash_loop", "crashy/0"), timeout=120)
    first = kinds("crash_loop", "crashy/0")[0]
    assert first["severity"] == "error", first
    assert "crashy/0 is in a crash loop: restarted 3 times within 40s" in first["message"]
    assert "last exit: exit status 3" in first["message"]
    # An alert too, sent once by the two monitors (each claims it in etcd first).
    wait_for("the crash loop at the webhook", lambda: named(sink, "CrashLoop", "firing"), 30)
    text = get(f"http://127.0.0.1:{monitor}/metrics").decode()
    assert 'spofless_monitor_crash_loop{component="crashy",index="0"} 1.0' in text

    # One etcd member of three killed: quorum at risk, once per monitor, then resolved.
    killed_at = time.time()
    os.kill(run.instance("etcd/1")["pid"], signal.SIGKILL)

    # (A loaded machine may make another member miss looks or flap at the same time: the
    # level is then "lost" rather than "at risk"; either names etcd/1, once per monitor.)
    def about_etcd1() -> list[dict[str, Any]]:
        return [
            e
            for kind in ("etcd_quorum_at_risk", "etcd_quorum_lost")
            for e in kinds(kind, "etcd")
            if e["at"] >= killed_at and "etcd/1" in e["data"]["down"]
        ]

    def monitors_told() -> set[str]:
        return {e["monitor"] for e in about_etcd1()}

    wait_for("quorum at risk", lambda: monitors_told() == {"monitor/0", "monitor/1"}, 30)
    wait_for(
        "quorum resolved",
        lambda: [e for e in kinds("etcd_quorum_resolved", "etcd") if e["at"] >= killed_at],
        timeout=90,
    )
    wait_for("etcd/1 seen up", lambda: seen_up("etcd/1"), timeout=30)
    first = min(about_etcd1(), key=lambda e: e["at"])
    assert first["data"]["margin"] <= 0 and "(etcd" in first["message"], first
    at_risk = [e for e in about_etcd1() if e["kind"] == "etcd_quorum_at_risk"]
    for e in at_risk:
        assert "members up (etcd/1 lost): quorum at risk" in e["message"]
    assert len(at_risk) <= 2, at_risk  # once per monitor at most

    def metrics() -> str:
        return get(f"http://127.0.0.1:{monitor}/metrics").decode()

    margin = 'spofless_monitor_etcd_quorum_margin{component="etcd"} 1.0'
    wait_for("the quorum margin back on /metrics", lambda: margin in metrics(), timeout=30)
    text = metrics()
    assert 'spofless_monitor_cpu_cores{component="etcd",index="0"}' in text
    assert 'spofless_monitor_requests_per_second{component="lb",index="0"}' in text

    # Minutes of history are not a trend: `trends` says so, exit 0.
    out = run.cli("trends")
    assert out.returncode == 0, out.stderr
    assert "no gauges recorded yet" in out.stdout or "too little history" in out.stdout

    # At the webhook: the quorum at risk, each content once (a loaded machine may make it
    # "lost" for a while: a new content), then resolved once.
    wait_for(
        "the quorum resolved at the webhook",
        lambda: named(sink, "EtcdQuorumAtRisk", "resolved"),
        timeout=30,
    )
    firing = named(sink, "EtcdQuorumAtRisk", "firing")
    assert len(firing) == len({a["fingerprint"] for a in firing}), firing
    assert "instance:etcd/1" in firing[0]["annotations"]["down"], firing[0]
    assert firing[0]["labels"]["component"] == "etcd"
    assert len(named(sink, "EtcdQuorumAtRisk", "resolved")) == 1

    # crashy's fourth run goes on: a whole window without a restart ends the loop.
    wait_for(
        "the crash loop resolved at the webhook",
        lambda: named(sink, "CrashLoop", "resolved"),
        timeout=120,
    )
    assert kinds("crash_loop_ended", "crashy/0")
    (fired,) = named(sink, "CrashLoop", "firing")
    (resolved,) = named(sink, "CrashLoop", "resolved")
    for alert in (fired, resolved):
        assert alert["labels"]["component"] == "crashy", alert
        assert alert["annotations"]["down"] == "instance:crashy/0", alert
    assert fired["annotations"]["summary"].startswith("crashy/0 is in a crash loop")

    # After every fault: full redundancy again, by itself (crashy is not needed by lb).
    wait_for(
        "lb's margin back",
        lambda: not [a for a in status(monitor)["alerts"] if a["key"] == "redundancy/lb"],
        timeout=30,
    )
