"""`spofless up --lab`: every host its own network namespace, traffic from a client host.

Needs root and network namespaces (skips with the reason elsewhere). Ports are fixed:
they are inside namespaces this test makes, where nothing else listens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_fixtures import require_lab
from stack_fixtures import StackRun, lab_stack_run, processes_using
from waiting import wait_for

from spofless.lab import Lab
from spofless.lab._netns import netns_names

pytestmark = [pytest.mark.integration, pytest.mark.lab]

TOPOLOGY = """\
name: labstack
regions:
  east: {zones: [a]}
  west: {zones: [a]}
hosts:
  h1: {zone: east/a}
  h2: {zone: east/a}
  h3: {zone: west/a}
  client: {zone: west/a}
components:
  lb:
    kind: load_balancer
    instances: [h1, h3]
    needs: [web]
    port: 8080
    admin_port: 8180
    admin_token: lab-test      # the admin API is off loopback in the lab
    routes: [{to: web}]
  web:
    kind: service
    instances: [h1, h2, h3]
    port: 8000
    run: python -m spofless.demo.app --host {host} --port {port} --name web-{index}
    health: {type: http, path: /healthz}
entry: [lb]
lab: {links: {zone: {latency_ms: 0.5}, region: {latency_ms: 1}}}
"""

# Prints the instance that answered each of N GETs, or the error; exit 1 on any error.
CLIENT = """
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            print(json.loads(r.read())["instance"])
    except OSError as exc:
        print("error", exc)
        sys.exit(1)
"""


@pytest.fixture
def lab_stack(tmp_path: Path) -> Iterator[tuple[StackRun, Lab]]:
    require_lab()
    with lab_stack_run(TOPOLOGY, tmp_path, "labstack") as (run, lab):
        yield run, lab


def from_client(lab: Lab, address: str, n: int) -> subprocess.CompletedProcess[str]:
    argv = lab.argv("client", [sys.executable, "-c", CLIENT, f"http://{address}/", str(n)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_up_lab_runs_each_host_in_its_namespace_and_down_removes_it(
    lab_stack: tuple[StackRun, Lab],
) -> None:
    run, lab = lab_stack
    up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"lab {lab.lab_id} up" in up.stdout

    doc = run.status()
    assert doc["lab"] == lab.lab_id
    address = {h.name: h.address for h in lab.plan.hosts.values()}
    by_name = {i["name"]: i for i in doc["instances"]}
    assert by_name["web/1"]["address"] == f"{address['h2']}:8001"
    assert by_name["lb/1"]["address"] == f"{address['h3']}:8081"
    assert all(i["state"] == "up" for i in doc["instances"])
    for name, host in (("web/0", "h1"), ("web/2", "h3"), ("lb/1", "h3")):
        assert by_name[name]["pid"] in lab.pids(host)
    table = run.cli("status").stdout
    assert f"in lab {lab.lab_id}" in table and f"{address['h1']}:8080" in table

    # From the client host, through the load balancer on the other region's host.
    out = from_client(lab, by_name["lb/0"]["address"], 6)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(out.stdout.split()) == {"web-0", "web-1", "web-2"}
    # Not on this machine's loopback: the instances live in their namespaces only.
    loop = from_client(lab, "127.0.0.1:8080", 1)
    assert loop.returncode != 0

    # Supervised in the lab as outside it: kill -9 is answered by a restart there.
    os.kill(by_name["web/1"]["pid"], signal.SIGKILL)
    restarted = wait_for(
        "web/1 restarted in h2",
        lambda: (
            (i := run.instance("web/1"))["state"] == "up"
            and i["pid"] != by_name["web/1"]["pid"]
            and i
        ),
    )
    assert restarted["pid"] in lab.pids("h2")
    assert from_client(lab, by_name["lb/1"]["address"], 3).returncode == 0

    down = run.cli("down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"removed lab {lab.lab_id}" in down.stdout
    assert netns_names(f"spf{lab.lab_id}-") == []
    assert processes_using(run.state_dir) == []
    assert lab.status()["up"] is False


def test_up_lab_refusal_leaves_no_lab(lab_stack: tuple[StackRun, Lab]) -> None:
    run, lab = lab_stack
    run.topology.write_text(TOPOLOGY.replace("    admin_token: lab-test", ""))
    up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "30")
    assert up.returncode == 2
    assert "lb/0: invalid load balancer settings" in up.stderr and "admin token" in up.stderr
    assert netns_names(f"spf{lab.lab_id}-") == []
    assert not (run.state_dir / "lab.json").exists()
