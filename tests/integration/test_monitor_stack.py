"""Two monitors run by `spofless up` watch etcd and a service; kill -9 an etcd member:
one firing alert naming the live SPOFs and one saying etcd's quorum is at risk reach the
webhook and the mailbox, each once, then resolved once when the supervisor has it back.
Real processes, real etcd, real SMTP."""

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
from monitor_fixtures import Mailbox, WebhookSink, smtp_server, webhook_sink
from stack_fixtures import StackRun, spofless, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: watched
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
  lb:
    kind: load_balancer
    instances: [node-1, node-2]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web}}]
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
    claim_ttl: 6
    receivers:
      # A timeout that a loaded machine's receiver meets: an attempt that times out is
      # retried, and the receiver may then get it twice (at least once, as Alertmanager).
      - {{type: webhook, name: hook, url: "{url}", timeout: 2, retries: 1}}
      - {{type: email, name: mail, smtp: "127.0.0.1:{smtp}", from: monitor@watched,
          to: [ops@watched], timeout: 2, retries: 1}}
entry: [lb]
"""


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[StackRun, WebhookSink, Mailbox, int]]:
    with webhook_sink() as sink, smtp_server() as box:
        taken: list[int] = [box.port]
        ports = {}
        for key, n in (
            ("web", 2),
            ("lb", 2),
            ("admin", 2),
            ("etcd", 3),
            ("peer", 3),
            ("monitor", 2),
        ):
            ports[key] = port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        path = tmp_path / "watched.yaml"
        path.write_text(TOPOLOGY.format(url=sink.url, smtp=box.port, **ports))
        with stack_run(path, tmp_path / "state") as run:
            yield run, sink, box, ports["monitor"]


def test_kill9_of_an_etcd_member_alerts_once_then_resolves(
    watched: tuple[StackRun, WebhookSink, Mailbox, int],
) -> None:
    run, sink, box, monitor_port = watched
    up = run.cli("up", "--detach", "--wait", "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    statuses = [f"http://127.0.0.1:{monitor_port + i}/status" for i in (0, 1)]

    def settled() -> bool:
        docs = [get_json(u) for u in statuses]
        return all(d["complete"] and not d["alerts"] and not d["down"] for d in docs)

    wait_for("both monitors see everything up", settled, timeout=60)
    # The load balancers are looked at through their admin API, backends included.
    lb0 = get_json(statuses[0])["instances"]["lb/0"]
    assert lb0["state"] == "up" and lb0["detail"] == "2/2 backends up", lb0
    time.sleep(1.0)  # anything a start-up blip left pending is delivered by now
    before = len(sink.alerts())
    mails_before = len(box.messages)

    victim = run.instance("etcd/1")["pid"]
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)

    def since_kill(status: str) -> list[dict[str, Any]]:
        return [a for a in sink.alerts()[before:] if a["status"] == status]

    wait_for("a firing alert", lambda: since_kill("firing"), timeout=30)
    latency = sink.received[-1].at - killed_at
    wait_for("both alerts resolved", lambda: len(since_kill("resolved")) >= 2, timeout=60)
    wait_for("four mails", lambda: len(box.messages) >= mails_before + 4, timeout=30)
    time.sleep(2.0)  # a duplicate from the other monitor would have come by now

    # Two alerts, each once and resolved once: lb's redundancy, and etcd's quorum at risk
    # (one member of three lost: one more loss stops it).
    alerts = sink.alerts()[before:]
    names = sorted({a["labels"]["alertname"] for a in alerts})
    assert names == ["EtcdQuorumAtRisk", "RedundancyLost"], alerts
    for name in names:
        got = [a["status"] for a in alerts if a["labels"]["alertname"] == name]
        assert got == ["firing", "resolved"], (name, alerts)
    quorum = next(a for a in alerts if a["labels"]["alertname"] == "EtcdQuorumAtRisk")
    assert quorum["labels"]["component"] == "etcd"
    assert quorum["annotations"]["down"] == "instance:etcd/1", quorum
    alert = next(a for a in alerts if a["labels"]["alertname"] == "RedundancyLost")
    assert alert["labels"]["alertname"] == "RedundancyLost"
    assert alert["labels"]["component"] == "lb"
    assert alert["labels"]["severity"] == "error"
    summary = alert["annotations"]["summary"]
    assert summary.startswith("etcd/1 is down: losing "), summary
    assert "etcd/0" in summary and "etcd/2" in summary and summary.endswith("takes lb down")
    subjects = box.subjects()[mails_before:]
    assert len(subjects) == 4, subjects
    expected = ["[FIRING:1", "[FIRING:1", "[RESOLVED", "[RESOLVED"]
    assert sorted(s.split("]")[0] for s in subjects) == expected, subjects
    print(f"kill -9 -> webhook: {latency:.3f}s")
    assert latency < 10.0  # a hang, not a timing claim

    # What the monitors recorded, through the CLI.
    out = spofless("events", run.topology, "--state-dir", run.state_dir, "--limit", "200")
    assert out.returncode == 0, out.stderr
    assert "etcd/1 is down" in out.stdout
    assert "instance:etcd/0 is now a single point of failure" in out.stdout
    # The federated metrics carry the live-SPOF gauge.
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/metrics", timeout=2) as resp:
        metrics = resp.read().decode()
    assert "spofless_monitor_live_spofs 0.0" in metrics
    assert 'spofless_monitor_margin{component="lb"} 2.0' in metrics

    # The alerting path has a margin too: a monitor killed is an alert from the other.
    before = len(sink.alerts())
    os.kill(run.instance("monitor/1")["pid"], signal.SIGKILL)
    wait_for("the monitor's resolved alert", lambda: since_kill("resolved"), timeout=60)
    time.sleep(1.0)
    alerts = sink.alerts()[before:]
    assert [a["status"] for a in alerts] == ["firing", "resolved"], alerts
    assert alerts[0]["labels"]["component"] == "monitor"
    assert alerts[0]["annotations"]["summary"].startswith("monitor/1 is down: losing ")
    assert "monitor/0" in alerts[0]["annotations"]["summary"]
