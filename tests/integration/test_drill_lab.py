"""`spofless drill` in the lab (`up --lab`): real network faults, always taken back.

A scenario cuts a zone, then a region, adds latency, partitions a zone off and drops
packets on a zone's link, under HTTP traffic from the lab's control
namespace through the load balancers; every cut is restored at the end. A drill
interrupted (SIGINT) while a region is cut off leaves no cut in place. HTTP through a
floating VIP rides a crash of the load balancer holding it, and a fault fires on the
VIP's hand-over.

Needs root and network namespaces (skips with the reason elsewhere).
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_fixtures import VIP_STACK, require_lab
from stack_fixtures import SPOFLESS, StackRun, lab_stack_run
from waiting import wait_for

from spofless.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.lab]

TOPOLOGY = """\
name: labdrill
regions:
  east: {zones: [a, b]}
  west: {zones: [a]}
hosts:
  h1: {zone: east/a}
  h2: {zone: east/b}
  h3: {zone: west/a}
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
drills:
  cuts:
    traffic: [{http: {via: lb, to: lb, path: /}, rate: 20}]
    faults:
      - {at: 1s, cut: zone:east/a, for: 3s}
      - {at: 6s, cut: region:west, for: 3s}
      - {at: 11s, latency: region:east, ms: 20, for: 2s}
      - {at: 14s, partition: [[zone:east/b], [zone:east/a, region:west]], for: 2s}
      - {at: 17s, loss: zone:west/a, pct: 10, for: 1s}
    duration: 20s
  long-cut:
    faults:
      - {at: 1s, cut: region:east, for: 60s}
    duration: 90s
"""


@pytest.fixture
def lab_stack(tmp_path: Path) -> Iterator[tuple[StackRun, Lab]]:
    require_lab()
    with lab_stack_run(TOPOLOGY, tmp_path, "labdrill") as (run, lab):
        up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "60")
        assert up.returncode == 0, up.stdout + up.stderr
        yield run, lab


def faults_in_place(lab: Lab) -> list[str]:
    status = lab.status()
    return [h["host"] for h in status["hosts"] if h["cut"]] + [
        lk["link"] for lk in status["links"] if lk["cut"] or lk["fault"]
    ]


@pytest.mark.timeout(300)
def test_a_lab_drill_cuts_a_zone_and_a_region_and_restores_them(
    lab_stack: tuple[StackRun, Lab],
) -> None:
    run, lab = lab_stack
    out = run.cli("drill", "-s", "cuts", "--format", "json", timeout=180)
    doc = json.loads(out.stdout)
    print(json.dumps(doc["summary"]), [(f["description"], f["errors"]) for f in doc["faults"]])
    assert [f["targets"] for f in doc["faults"]] == [
        ["zone:east/a"],
        ["region:west"],
        ["region:east"],
        ["zone:east/b"],
        ["zone:west/a"],
    ]
    assert all(f["applied"] and f["end"] is not None for f in doc["faults"])
    # The traffic came from the lab (lab addresses only answer there) and got through.
    (stream,) = doc["streams"]
    assert stream["requests"] > 100 and stream["errors"] < stream["requests"] / 2
    assert faults_in_place(lab) == []
    assert doc["after"]["whole"] is True, doc["after"]
    assert out.returncode == 0, out.stderr


@pytest.mark.timeout(300)
def test_an_interrupted_lab_drill_leaves_no_cut(lab_stack: tuple[StackRun, Lab]) -> None:
    run, lab = lab_stack
    argv = [SPOFLESS, "drill", str(run.topology), "-s", "long-cut", "--format", "json"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(run.state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("region:east cut", lambda: faults_in_place(lab) == ["region:east"], timeout=60)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if faults_in_place(lab):
            lab.restore()
    assert proc.returncode == 130, stderr
    assert faults_in_place(lab) == []
    assert json.loads(stdout)["aborted"].startswith("interrupted")


@pytest.mark.timeout(400)
def test_the_default_plan_in_the_lab_drills_zones_and_regions(
    lab_stack: tuple[StackRun, Lab],
) -> None:
    """No single point of failure: every zone and region, and a host, fails alone (cut
    off) and the clients keep being served. (Every instance and host is drilled by
    test_drill_stack's default plan; `--only` keeps this one to what only the lab does.)"""
    run, lab = lab_stack
    # Held long enough for a loaded machine to detect and route around each (2 s was not).
    out = run.cli(
        "drill", "--hold", "5", "--only", "zone", "--only", "region", "--only", "host:h1",
        "--format", "json", timeout=360,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    got = {f["element"]: (f["predicted"], f["measured"], f["action"]) for f in doc["faults"]}
    print(got)
    assert {e for e in got if e.startswith(("zone:", "region:"))} == {
        "zone:east/a",
        "zone:east/b",
        "zone:west/a",
        "region:east",
        "region:west",
    }
    assert got["region:east"] == ("up", "up", "cut") and got["host:h1"][2] == "cut"
    assert all(p == m == "up" for p, m, _ in got.values()), got
    assert faults_in_place(lab) == []
    assert out.returncode == 0, out.stderr


# test_stack_vip_lab.py's stack (two load balancers sharing a VIP, decided by three
# etcd members in three regions), with a drill.
VIP_TOPOLOGY = VIP_STACK.replace("name: vipstack", "name: vipdrill\nsecurity: {tls: false}") + (
    """\
drills:
  holder-crash:
    traffic: [{http: {via: vip, to: lb, path: /}, rate: 20}]
    faults:
      - {at: 2s, kill: lb, role: holder}
      - {when: lb.vip_handover, stop: web/0}
    duration: 14s
"""
)


@pytest.mark.timeout(300)
def test_http_through_the_vip_rides_a_holder_crash(tmp_path: Path) -> None:
    """Traffic through the floating address (`via: vip`, from the lab's control
    namespace); kill -9 of the load balancer holding it: the VIP moves to the other
    one, the `lb.vip_handover` fault fires on it, and the clients are served again."""
    require_lab()
    with lab_stack_run(VIP_TOPOLOGY, tmp_path, "vipdrill") as (run, lab):
        up = run.cli("up", "--lab", "--detach", "--wait", "--timeout", "90", timeout=150)
        assert up.returncode == 0, up.stdout + up.stderr
        wait_for(
            "one VIP holder",
            lambda: any(i["role"] == "vip-holder" for i in run.status()["instances"]),
            timeout=30,
        )
        out = run.cli("drill", "-s", "holder-crash", "--format", "json", timeout=180)
        doc = json.loads(out.stdout)
        crash, handover = doc["faults"]
        print([(f["description"], f["targets"], f["at"], f["seen"]) for f in doc["faults"]])
        assert crash["applied"] and crash["targets"][0].startswith("lb/")
        assert handover["when"] == "lb.vip_handover" and handover["targets"] == ["web/0"]
        assert handover["seen"].startswith(f"the VIP left {crash['targets'][0]}")
        assert crash["at"] < handover["seen_at"] <= handover["at"]
        (stream,) = doc["streams"]
        # 280 at the nominal rate; a request waiting through the hand-over holds the
        # stream back (88 in a loaded CI run): this checks that traffic went through.
        assert stream["name"].startswith("http-0 GET via vip") and stream["requests"] > 40
        (window,) = crash["windows"]
        assert window["recovered"], window  # served through the VIP again after the move
        assert doc["after"]["whole"] is True, doc["after"]
        assert faults_in_place(lab) == []
        assert out.returncode == 0, out.stderr
