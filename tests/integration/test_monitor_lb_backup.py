"""A route's hand-over to its backups, seen by the monitors run by `spofless up`.

kill -9 of both primary web instances behind a route with a backup: the load
balancers fail over to the backup, the monitors record the hand-over and one
`RouteOnBackup` alert reaches the webhook; the supervisor restarts the primaries,
the route fails back, the alert resolves. Real processes, real etcd."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from free_ports import port_block
from monitor_fixtures import webhook_sink
from stack_fixtures import spofless, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: standby
security: {{tls: false}}
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
  node-3: {{address: 127.0.0.1}}
components:
  web:
    kind: service
    instances: [node-1, node-2, node-3]
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
    routes: [{{to: web, backup: [2]}}]
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
    needs: [etcd]
    claim_ttl: 6
    receivers:
      - {{type: webhook, name: hook, url: "{url}", timeout: 2, retries: 1}}
entry: [lb]
"""


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_a_failover_to_the_backup_is_an_event_and_one_alert(tmp_path: Path) -> None:
    with webhook_sink() as sink:
        taken: list[int] = []
        ports = {}
        for key, n in (("web", 3), ("lb", 2), ("admin", 2), ("etcd", 3), ("peer", 3)):
            ports[key] = port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        ports["monitor"] = port_block(2, taken)
        path = tmp_path / "standby.yaml"
        path.write_text(TOPOLOGY.format(url=sink.url, **ports))
        with stack_run(path, tmp_path / "state") as run:
            up = run.cli("up", "--detach", "--wait", "--timeout", "90")
            assert up.returncode == 0, up.stdout + up.stderr
            statuses = [f"http://127.0.0.1:{ports['monitor'] + i}/status" for i in (0, 1)]

            def settled() -> bool:
                docs = [get_json(u) for u in statuses]
                return all(d["complete"] and not d["alerts"] and not d["down"] for d in docs)

            wait_for("both monitors see everything up", settled, timeout=60)
            lb0 = f"http://127.0.0.1:{ports['admin']}/status"
            assert get_json(lb0)["routes"]["web"]["serving"] == ["web/0", "web/1"]
            time.sleep(1.0)
            before = len(sink.alerts())

            def route_alerts(status: str) -> list[dict[str, Any]]:
                return [
                    a for a in sink.alerts(status) if a["labels"]["alertname"] == "RouteOnBackup"
                ]

            pids = [run.instance(name)["pid"] for name in ("web/0", "web/1")]
            for pid in pids:  # at once: each lookup takes a while
                os.kill(pid, signal.SIGKILL)
            wait_for("the RouteOnBackup alert", lambda: route_alerts("firing"), timeout=30)
            # The supervisor restarts both; the route fails back; the alert resolves.
            wait_for("its resolution", lambda: route_alerts("resolved"), timeout=60)
            wait_for("full redundancy again", settled, timeout=60)
            route = get_json(lb0)["routes"]["web"]
            time.sleep(2.0)  # a duplicate from the other monitor would have come by now
            firing, resolved = route_alerts("firing"), route_alerts("resolved")
            out = spofless("events", run.topology, "--state-dir", run.state_dir, "--limit", "300")
    assert len(sink.alerts()) > before
    assert len(firing) == 1 and len(resolved) == 1, sink.alerts()
    summary = firing[0]["annotations"]["summary"]
    assert summary.startswith("lb: route web is on its backups"), summary
    assert "losing web/2 now takes the route down" in summary
    assert firing[0]["labels"]["severity"] == "error"
    assert (route["failovers"], route["failbacks"], route["on_backup"]) == (1, 1, False)
    assert out.returncode == 0, out.stderr
    assert "route web failed over to its backups (web/2 serving)" in out.stdout
    assert "route web failed back to its primaries" in out.stdout
