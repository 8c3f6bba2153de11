"""`spofless rollout` across two supervisors, coordinated through etcd.

Two `spofless up --host` runs on one machine (the topology's hosts on 127.0.0.1,
each supervisor with its own state dir) share four web instances, two load
balancers and a three-member etcd. A rollout started next to one supervisor
replaces the other's instances through etcd, one instance at a time across both,
under HTTP load through both load balancers with no failed request. A second
rollout while one runs is refused (exit 2) from the other side. A driver killed
with SIGKILL while an instance is drained leaves it drained only until its lock
expires: the supervisors abort the rollout and readmit it by themselves, and the
next rollout repairs the half-replaced instance first.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rollout_fixtures import NEVER_HEALTHY, V2, Load, admin_states
from stack_fixtures import SPOFLESS, StackRun, free_port_block, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: rollmulti
security: {{tls: false}}
hosts:
  node-1: {{address: 127.0.0.1}}
  node-2: {{address: 127.0.0.1}}
  node-3: {{address: 127.0.0.1}}
components:
  lb:
    kind: load_balancer
    instances: [node-1, node-2]
    needs: [web]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web}}]
  web:
    kind: service
    instances: [node-1, node-2, node-1, node-2]
    port: {web}
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz, interval: 0.2, rise: 2, fall: 2}}
  etcd:
    kind: etcd
    instances: [node-1, node-2, node-3]
    min_up: majority
    port: {etcd}
    peer_port: {peer}
entry: [lb]
"""

WEB = [f"web/{i}" for i in range(4)]


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[StackRun, StackRun, int, int]]:
    taken: list[int] = []
    ports = {}
    for key, n in (("web", 4), ("lb", 2), ("admin", 2), ("etcd", 3), ("peer", 3)):
        ports[key] = free_port_block(n, taken)
        taken += range(ports[key], ports[key] + n)
    path = tmp_path / "rollmulti.yaml"
    path.write_text(TOPOLOGY.format(**ports))
    with stack_run(path, tmp_path / "a") as a, stack_run(path, tmp_path / "b") as b:
        yield a, b, ports["lb"], ports["admin"]


def _state(run: StackRun) -> list[dict[str, Any]]:
    try:
        return list(json.loads((run.state_dir / "state.json").read_text())["instances"])
    except (OSError, ValueError, KeyError):
        return []


def _whole(*runs: StackRun) -> bool:
    insts = [i for r in runs for i in _state(r)]
    return len(insts) == 9 and all(
        i["state"] == "up" and i["health"] in ("healthy", "none") for i in insts
    )


class Sampler:
    """Every 50 ms: which web instances are out (drained on a load balancer, or not up)."""

    def __init__(self, a: StackRun, b: StackRun, admin: int) -> None:
        self.runs, self.admin = (a, b), admin
        self.most_out: set[str] = set()
        self.out_seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            out = set()
            for port in (self.admin, self.admin + 1):
                with contextlib.suppress(OSError):
                    out |= {n for n, s in admin_states(port).items() if s != "enabled"}
            for run in self.runs:
                out |= {
                    i["name"] for i in _state(run) if i["component"] == "web" and i["state"] != "up"
                }
            if len(out) > len(self.most_out):
                self.most_out = out
            self.out_seen += sorted(out - set(self.out_seen[-1:]))
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _up(run: StackRun, *hosts: str) -> None:
    args = [a for h in hosts for a in ("--host", h)]
    up = run.cli("up", *args, "--detach", "--wait", "--timeout", "90", timeout=150)
    assert up.returncode == 0, up.stdout + up.stderr


def test_a_rollout_across_two_supervisors_one_instance_at_a_time_and_a_killed_driver(
    two: tuple[StackRun, StackRun, int, int],
) -> None:
    a, b, lb, admin = two
    _up(a, "node-1", "node-3")  # lb/0, web/0, web/2, etcd/0, etcd/2
    _up(b, "node-2")  # lb/1, web/1, web/3, etcd/1
    wait_for("both supervisors whole", lambda: _whole(a, b), 60)

    # Both supervisors publish their instances in etcd: the plan sees all four.
    def planned() -> str | None:
        dry = a.cli("rollout", "--component", "web", "--run", V2, "--dry-run")
        return dry.stdout if dry.returncode == 0 else None

    plan = wait_for("the plan of all four instances", planned, 30, step=0.5)
    assert plan.count("no single point of failure while it is out") == 4, plan
    assert "drained on: lb/0, lb/1" in plan

    pids_before = {i["name"]: i["pid"] for r in (a, b) for i in _state(r)}
    with Load(lb) as load, Sampler(a, b, admin) as sampler:
        wait_for("traffic flows", lambda: len(load.answers) > 20, 30)
        done = a.cli("rollout", "--component", "web", "--run", V2, "--json", timeout=300)
        seen = len(load.answers)
        wait_for("more traffic", lambda: len(load.answers) > seen + 40, 30)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [(s["instance"], s["outcome"]) for s in steps] == [(n, "replaced") for n in WEB]
    assert all(s["cut"] == 0 for s in steps)
    assert load.failures == []
    assert set(load.answers[-40:]) == {f"web-{i}-v2" for i in range(4)}
    # One at a time across both supervisors: never two instances out together, and
    # each was replaced by the supervisor that runs it (its new pid is in that state).
    assert len(sampler.most_out) <= 1, sampler.most_out
    assert sampler.out_seen == WEB, sampler.out_seen
    owner = {i["name"]: r for r in (a, b) for i in _state(r)}
    for s in steps:
        now = {i["name"]: i["pid"] for i in _state(owner[s["instance"]])}
        assert now[s["instance"]] == s["pid"] != pids_before[s["instance"]]
    assert {owner[n].state_dir.name for n in WEB} == {"a", "b"}
    wait_for("whole after the rollout", lambda: _whole(a, b), 60)

    # A driver started next to b, killed with SIGKILL while a's web/0 is drained.
    argv = [SPOFLESS, "rollout", str(b.topology), "--state-dir", str(b.state_dir)]
    driver = subprocess.Popen(
        [*argv, "--component", "web", "--run", NEVER_HEALTHY, "--health-timeout", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "web/0 drained and being replaced",
            lambda: "replacing" in a.cli("rollout", "--status").stdout,
            30,
        )
        assert all(admin_states(p)["web/0"] == "drain" for p in (admin, admin + 1))
        second = a.cli("rollout", "--component", "web")
        assert second.returncode == 2, second.stdout + second.stderr
        assert "a rollout already runs: rollout of web" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        driver.kill()
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    # Nobody runs --abort: the supervisors see the lock gone and readmit web/0.
    wait_for(
        "web/0 readmitted by the supervisors",
        lambda: all(admin_states(p)["web/0"] == "enabled" for p in (admin, admin + 1)),
        30,
    )
    status = b.cli("rollout", "--status").stdout
    assert "aborted" in status and "its driver went away" in status, status

    # web/0 runs the never-healthy command: the next rollout replaces it first.
    plan2 = b.cli("rollout", "--component", "web", "--run", V2, "--dry-run")
    assert plan2.stdout.splitlines()[0].startswith("1. replace web/0: it is not doing its job")
    fixed = b.cli("rollout", "--component", "web", "--run", V2, "--json", timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    wait_for("whole again", lambda: _whole(a, b), 60)
    assert all(s == "enabled" for p in (admin, admin + 1) for s in admin_states(p).values())
    assert "done" in a.cli("rollout", "--status").stdout


def test_a_surge_through_etcd_runs_where_its_host_is_and_a_dead_driver_leaves_none(
    two: tuple[StackRun, StackRun, int, int],
) -> None:
    """A rollout next to b with --surge 1: web/4 goes to node-3, where web runs least,
    so a's supervisor starts it at the request through etcd; no request fails and
    nothing temporary is left. A driver killed while its web/4 runs: a's supervisor
    removes it once the rollout's lock has expired."""
    a, b, lb, admin = two
    _up(a, "node-1", "node-3")
    _up(b, "node-2")
    wait_for("both supervisors whole", lambda: _whole(a, b), 60)

    def temporary(run: StackRun) -> list[dict[str, Any]]:
        return [i for i in _state(run) if i.get("temporary")]

    with Load(lb) as load:
        wait_for("traffic flows", lambda: len(load.answers) > 20, 30)
        done = b.cli(
            "rollout", "--component", "web", "--run", V2, "--surge", "1", "--json", timeout=300
        )
        seen = len(load.answers)
        wait_for("more traffic", lambda: len(load.answers) > seen + 40, 30)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [(s["instance"], s["outcome"]) for s in steps] == [
        ("web/4", "started"),
        *[(n, "replaced") for n in WEB],
        ("web/4", "removed"),
    ]
    assert load.failures == []
    assert "web-4-v2" in load.answers
    assert temporary(a) == temporary(b) == []
    assert all("web/4" not in admin_states(p) for p in (admin, admin + 1))
    wait_for("whole after the rollout", lambda: _whole(a, b), 60)

    argv = [SPOFLESS, "rollout", str(b.topology), "--state-dir", str(b.state_dir)]
    driver = subprocess.Popen(
        [*argv, "--component", "web", "--run", NEVER_HEALTHY, "--surge", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("web/4 started on a", lambda: len(temporary(a)) == 1, 60, step=0.1)
        pid = temporary(a)[0]["pid"]
        driver.kill()
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    wait_for("web/4 removed by a's supervisor", lambda: temporary(a) == [], 60, step=0.2)
    assert not Path(f"/proc/{pid}").exists()
    assert all("web/4" not in admin_states(p) for p in (admin, admin + 1))
    status = b.cli("rollout", "--status").stdout
    assert "aborted" in status, status
    wait_for("whole again", lambda: _whole(a, b), 60)
