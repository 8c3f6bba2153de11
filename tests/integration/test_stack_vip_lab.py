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
from lab_fixtures import VIP, require_lab
from lab_fixtures import VIP_STACK as TOPOLOGY
from stack_fixtures import StackRun, lab_stack_run, processes_using
from waiting import wait_for

from spofless.lab import Lab
from spofless.lab._netns import netns_names

pytestmark = [pytest.mark.integration, pytest.mark.lab]

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


def reaches_vip(lab: Lab, vip: str = VIP) -> bool:
    argv = lab.argv("client", [sys.executable, "-c", CLIENT, f"http://{vip}:8080/"])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode == 0


def holder(run: StackRun, indexes: tuple[int, ...] = (0, 1)) -> dict[str, Any] | None:
    """The load balancer instance among `indexes` holding the VIP (theirs: one region's
    with per-region VIPs), when exactly one agent among them says it holds."""
    doc = {i["name"]: i for i in run.status()["instances"]}
    agents = [n for n in (f"lb-vip/{i}" for i in indexes) if doc[n]["role"] == "holder"]
    lbs = [doc[n] for n in (f"lb/{i}" for i in indexes) if doc[n]["role"] == "vip-holder"]
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


# -- one VIP per region ---------------------------------------------------------------

VIP_R1, VIP_R2 = "10.77.255.201", "10.77.255.202"
R1_CLIENTS, R2_CLIENTS = "192.0.2.0", "198.51.100.0"  # sent as the EDNS client subnet

# Two load balancers in r1 (zone b, so that the zone can be cut alone), one in r2; the
# DNS servers in r3 and r2 answer www with the VIP of the client's region.
REGIONS_TOPOLOGY = (
    TOPOLOGY.replace("name: vipstack", "name: vipgeo\nsecurity: {tls: false}")
    # A loaded shared machine: etcd's /health answers later than the default 0.25 s.
    .replace(
        "    peer_port: 2400\n",
        "    peer_port: 2400\n    health: {type: http, path: /health, timeout: 2, fall: 3}\n",
    )
    .replace("r1: {zones: [a]}", "r1: {zones: [a, b]}")
    .replace(
        "  lb1: {zone: r1/a}\n  lb2: {zone: r2/a}\n",
        "  lb1: {zone: r1/b}\n  lb2: {zone: r1/b}\n  lb3: {zone: r2/a}\n",
    )
    .replace("instances: [lb1, lb2]", "instances: [lb1, lb2, lb3]")
    .replace(
        f"vip: {{address: {VIP}/16,",
        f"vip: {{addresses: {{r1: {VIP_R1}/16, r2: {VIP_R2}/16}},",
    )
    # Four load balancer agents renewing on a loaded machine: etcd writes took over 0.5 s
    # at times, so a claim survives a few slow renewals here (slower hand-overs).
    .replace(
        "hold_time: 0.6, takeover_margin: 0.1}",
        "heartbeat_interval: 0.2, hold_time: 1.5, takeover_margin: 0.2, lease_ttl: 4}",
    )
    .replace(
        "entry: [lb]",
        f"""  dns:
    kind: dns
    instances: [app3, app2]
    needs: [lb]
    port: 5300
    zone: geo.test
    ttl: 1
    records: {{www: lb}}
    regions: {{r1: [{R1_CLIENTS}/24], r2: [{R2_CLIENTS}/24]}}
entry: [dns]""",
    )
)

# Ask the DNS server for www's A records as a client of the subnet argv[3]; print them.
QUERY = """
import sys, dns.edns, dns.message, dns.query
q = dns.message.make_query("www.geo.test.", "A", use_edns=0,
                           options=[dns.edns.ECSOption(sys.argv[3], 24)])
r = dns.query.udp(q, sys.argv[1], port=int(sys.argv[2]), timeout=2)
print(" ".join(sorted(rd.address for rrset in r.answer for rd in rrset)))
"""


@pytest.fixture
def geo_stack(tmp_path: Path) -> Iterator[tuple[StackRun, Lab]]:
    require_lab()
    assert "lb3: {zone: r2/a}" in REGIONS_TOPOLOGY and "addresses:" in REGIONS_TOPOLOGY
    assert "timeout: 2" in REGIONS_TOPOLOGY and "hold_time: 1.5" in REGIONS_TOPOLOGY
    with lab_stack_run(REGIONS_TOPOLOGY, tmp_path, "vipgeo") as (run, lab):
        yield run, lab


def answer_for(run: StackRun, lab: Lab, subnet: str) -> str:
    host, _, port = run.instance("dns/0")["address"].rpartition(":")
    argv = lab.argv("client", [sys.executable, "-c", QUERY, host, port, subnet])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr[-200:]}"


def test_one_vip_per_region_and_dns_falls_back_to_another_region(
    geo_stack: tuple[StackRun, Lab],
) -> None:
    """Each region's load balancers hold their region's VIP; DNS answers each region's
    clients with it; kill -9 of r1's holder moves r1's VIP to r1's other load balancer;
    cutting both r1 load balancers off leaves r1's VIP without a holder and DNS answers
    r1's clients with r2's VIP; healed, r1's VIP and answer come back by themselves."""
    run, lab = geo_stack
    up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    r1 = wait_for("a holder of r1's VIP", lambda: holder(run, (0, 1)), timeout=30)
    r2 = wait_for("a holder of r2's VIP", lambda: holder(run, (2,)), timeout=30)
    assert r1["host"] in ("lb1", "lb2") and r2["host"] == "lb3"
    wait_for("r1's VIP answering", lambda: reaches_vip(lab, VIP_R1), timeout=15)
    wait_for("r2's VIP answering", lambda: reaches_vip(lab, VIP_R2), timeout=15)
    wait_for(
        "r1's clients get r1's VIP", lambda: answer_for(run, lab, R1_CLIENTS) == VIP_R1, timeout=20
    )
    wait_for(
        "r2's clients get r2's VIP", lambda: answer_for(run, lab, R2_CLIENTS) == VIP_R2, timeout=20
    )

    os.kill(r1["pid"], signal.SIGKILL)
    moved = wait_for(
        "r1's other load balancer holding r1's VIP",
        lambda: (h := holder(run, (0, 1))) is not None and h["index"] != r1["index"] and h,
        timeout=20,
    )
    wait_for("r2's VIP still held", lambda: holder(run, (2,)), timeout=20)
    wait_for("r1's VIP answering again", lambda: reaches_vip(lab, VIP_R1), timeout=15)
    wait_for(
        "the killed load balancer back",
        lambda: run.instance(r1["name"])["state"] == "up",
        timeout=30,
    )

    lab.cut("zone:r1/b")  # both of r1's load balancers: nobody may hold r1's VIP
    try:
        wait_for("r1's VIP unheld", lambda: not reaches_vip(lab, VIP_R1), timeout=20)
        wait_for(
            "r1's clients answered with r2's VIP",
            lambda: answer_for(run, lab, R1_CLIENTS) == VIP_R2,
            timeout=30,
        )
        assert reaches_vip(lab, VIP_R2)
    finally:
        lab.restore("zone:r1/b")
    assert moved["host"] in ("lb1", "lb2")
    wait_for("a holder of r1's VIP again", lambda: holder(run, (0, 1)), timeout=30)
    wait_for("r1's VIP answering after the cut", lambda: reaches_vip(lab, VIP_R1), timeout=20)
    wait_for(
        "r1's clients get r1's VIP again",
        lambda: answer_for(run, lab, R1_CLIENTS) == VIP_R1,
        timeout=30,
    )

    down = run.cli("down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_using(run.state_dir) == []
