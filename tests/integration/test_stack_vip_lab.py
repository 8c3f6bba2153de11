"""`spofless up --lab` with a floating VIP: an agent beside each load balancer, in its host.

Two load balancers share a VIP, three web instances and three etcd members
decide; a client host reaches the VIP; kill -9 of the holder's load balancer
moves the VIP to the other one and the client reaches it again; `down`
leaves no namespace and no process. Needs root and network namespaces (skips
with the reason elsewhere). Ports are fixed: they are inside namespaces this
test makes, where nothing else listens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_fixtures import require_lab
from stack_fixtures import StackRun, lab_stack_run, processes_using
from waiting import wait_for

from spofless.lab import Lab
from spofless.lab._netns import netns_names

pytestmark = [pytest.mark.integration, pytest.mark.lab]

VIP = "10.77.255.200"

# Three regions so that no single one is a point of failure; hold_time above the
# default because this machine is shared and loaded (an etcd write slower than it
# costs the holder the address: safely, but an outage; see docs/vip.md).
TOPOLOGY = f"""\
name: vipstack
regions:
  r1: {{zones: [a]}}
  r2: {{zones: [a]}}
  r3: {{zones: [a]}}
hosts:
  lb1: {{zone: r1/a}}
  lb2: {{zone: r2/a}}
  app1: {{zone: r1/a}}
  app2: {{zone: r2/a}}
  app3: {{zone: r3/a}}
  client: {{zone: r3/a}}
components:
  etcd:
    kind: etcd
    instances: [app1, app2, app3]
    min_up: majority
    port: 2379
    peer_port: 2400
  web:
    kind: service
    instances: [app1, app2, app3]
    port: 8000
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz}}
  lb:
    kind: load_balancer
    instances: [lb1, lb2]
    needs: [web, etcd]
    port: 8080
    routes: [{{to: web}}]
    vip: {{address: {VIP}/16, hold_time: 0.6, takeover_margin: 0.1}}
entry: [lb]
"""

# GET the URL once; print the instance that answered; exit 1 on an error.
CLIENT = """
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    print(json.loads(r.read())["instance"])
"""


@pytest.fixture
def vip_stack(tmp_path: Path) -> Iterator[tuple[StackRun, Lab]]:
    require_lab()
    with lab_stack_run(TOPOLOGY, tmp_path, "vipstack") as (run, lab):
        yield run, lab


def reaches_vip(lab: Lab) -> bool:
    argv = lab.argv("client", [sys.executable, "-c", CLIENT, f"http://{VIP}:8080/"])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode == 0


def holder(run: StackRun) -> dict[str, Any] | None:
    """The load balancer instance holding the VIP, when exactly one agent says it holds."""
    doc = {i["name"]: i for i in run.status()["instances"]}
    agents = [n for n in ("lb-vip/0", "lb-vip/1") if doc[n]["role"] == "holder"]
    lbs = [doc[n] for n in ("lb/0", "lb/1") if doc[n]["role"] == "vip-holder"]
    if len(agents) != 1 or len(lbs) != 1 or agents[0].split("/")[1] != str(lbs[0]["index"]):
        return None
    return lbs[0]


def test_up_lab_floats_a_vip_between_load_balancers(vip_stack: tuple[StackRun, Lab]) -> None:
    run, lab = vip_stack
    up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "90", timeout=150)
    assert up.returncode == 0, up.stdout + up.stderr
    doc = {i["name"]: i for i in run.status()["instances"]}
    assert doc["lb-vip/1"]["address"] == f"{VIP}:8080" and doc["lb-vip/1"]["host"] == "lb2"
    assert doc["lb-vip/0"]["pid"] in lab.pids("lb1")  # in its load balancer's namespace

    old = wait_for("one VIP holder", lambda: holder(run), timeout=30)
    wait_for("the client reaching the VIP", lambda: reaches_vip(lab), timeout=15)
    assert "lb-vip" in run.cli("status").stdout

    os.kill(old["pid"], signal.SIGKILL)
    new = wait_for(
        "the other load balancer holding the VIP",
        lambda: (h := holder(run)) is not None and h["index"] != old["index"] and h,
        timeout=20,
    )
    assert new["host"] != old["host"]
    wait_for("the client reaching the VIP again", lambda: reaches_vip(lab), timeout=15)

    down = run.cli("down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert netns_names(f"spf{lab.lab_id}-") == []
    assert processes_using(run.state_dir) == []
    assert lab.status()["up"] is False


def test_rollout_of_the_load_balancers_hands_the_vip_over_first(
    vip_stack: tuple[StackRun, Lab],
) -> None:
    """`spofless rollout --component lb`: the standby first, then the holder's agent
    releases the address to the standby, then the old holder; the client reaches the
    VIP throughout the checks and after."""
    import json

    run, lab = vip_stack
    up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "90", timeout=150)
    assert up.returncode == 0, up.stdout + up.stderr
    old = wait_for("one VIP holder", lambda: holder(run), timeout=30)
    wait_for("the client reaching the VIP", lambda: reaches_vip(lab), timeout=15)
    refused = run.cli("rollout", "--component", "lb")
    assert refused.returncode == 2 and "single point of failure" in refused.stderr

    done = run.cli("rollout", "--component", "lb", "--allow-spof", "--json", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = json.loads(done.stdout)["steps"]
    standby = f"lb/{1 - old['index']}"
    assert [(s["instance"], s["action"]) for s in steps] == [
        (standby, "replace"),
        (old["name"], "handover"),
        (old["name"], "replace"),
    ]
    assert steps[1]["detail"] == f"{old['name']} -> {standby}"
    new = wait_for("one VIP holder after", lambda: holder(run), timeout=30)
    assert new["name"] == standby
    wait_for("the client reaching the VIP", lambda: reaches_vip(lab), timeout=15)
