"""`spofless up/status/down` on a real stack: 3 demo web instances and a 3-member etcd."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_fixtures import (
    StackRun,
    demo_topology,
    listening,
    processes_using,
    stack_run,
    supervisor_pid,
)
from waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[StackRun, dict[str, int]]]:
    topology, ports = demo_topology(tmp_path / "stack-demo.yaml")
    with stack_run(topology, tmp_path / "state") as run:
        yield run, ports


def all_ports(ports: dict[str, int]) -> list[int]:
    return [p + i for p in ports.values() for i in range(3)]


def test_kill9_instance_is_restarted_and_down_leaves_nothing(
    demo: tuple[StackRun, dict[str, int]],
) -> None:
    run, ports = demo
    up = run.cli("up", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    doc = run.status()
    by_name = {i["name"]: i for i in doc["instances"]}
    assert sorted(by_name) == ["etcd/0", "etcd/1", "etcd/2", "web/0", "web/1", "web/2"]
    for inst in doc["instances"]:
        assert {"component", "index", "host", "state", "pid", "role", "address"} <= inst.keys()
        assert inst["state"] == "up" and inst["pid"] > 0 and inst["restarts"] == 0
    assert by_name["web/1"]["address"] == f"127.0.0.1:{ports['web'] + 1}"
    assert by_name["etcd/2"]["address"] == f"127.0.0.1:{ports['etcd'] + 2}"
    assert by_name["web/0"]["role"] is None

    def etcd_roles() -> list[str] | None:
        roles = sorted(
            str(i["role"]) for i in run.status()["instances"] if i["component"] == "etcd"
        )
        return roles if roles == ["follower", "follower", "leader"] else None

    wait_for("one etcd leader and two followers", etcd_roles, timeout=20)

    # The demo app answers, and writes go through any instance.
    url = f"http://127.0.0.1:{ports['web']}"
    req = urllib.request.Request(f"{url}/write", data=b"hello", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 201

    victim = by_name["web/1"]["pid"]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> dict[str, object] | None:
        inst = run.instance("web/1")
        ok = inst["state"] == "up" and inst["restarts"] == 1 and inst["pid"] != victim
        return inst if ok else None

    inst = wait_for("web/1 restarted and up", restarted, timeout=30)
    assert inst["last_exit"] == "killed by SIGKILL"
    others = {i["name"]: i for i in run.status()["instances"] if i["name"] != "web/1"}
    assert all(i["restarts"] == 0 and i["state"] == "up" for i in others.values())

    human = run.cli("status")
    assert human.returncode == 0
    assert "web/1" in human.stdout and "running" in human.stdout

    logs = run.cli("logs", "web/1")
    assert logs.returncode == 0 and "listening" in logs.stdout

    down = run.cli("down")
    assert down.returncode == 0, down.stderr
    assert processes_using(run.state_dir) == []
    assert listening(all_ports(ports)) == []
    doc = run.status()
    assert {i["state"] for i in doc["instances"]} == {"stopped"}
    assert doc["supervisor"]["running"] is False


def test_killing_the_supervisor_orphans_nothing(demo: tuple[StackRun, dict[str, int]]) -> None:
    run, ports = demo
    up = run.cli("up", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    pid = supervisor_pid(run.state_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # The parent-death signal takes every instance down with the supervisor.
    wait_for("instances gone", lambda: not listening(all_ports(ports)), timeout=20)
    wait_for("no process left", lambda: not processes_using(run.state_dir), timeout=20)
    doc = run.status()
    assert doc["supervisor"]["running"] is False and doc["phase"] == "supervisor-dead"
    assert {i["state"] for i in doc["instances"]} == {"stopped"}
    down = run.cli("down")
    assert down.returncode == 0, down.stderr


def test_a_crash_loop_is_reported_as_failed(tmp_path: Path) -> None:
    topology = tmp_path / "crash.yaml"
    topology.write_text(
        "name: crash\n"
        "components:\n"
        "  bad:\n"
        "    kind: service\n"
        "    instances: 2\n"
        "    run: python -c 'import sys; print(\"boom\"); sys.exit(3)'\n"
        "entry: [bad]\n"
    )
    with stack_run(topology, tmp_path / "state") as run:
        up = run.cli("up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        # Default policy: 5 fast exits in a row, 0.5+1+2+4 s of backoff between them.
        wait_for(
            "bad/0 failed",
            lambda: run.instance("bad/0")["state"] == "failed",
            timeout=60,
        )
        inst = run.instance("bad/0")
        assert "crash loop" in inst["message"] and "exit status 3" in inst["message"]
        assert inst["restarts"] == 4 and inst["pid"] is None
        assert "boom" in run.cli("logs", "bad/0").stdout
        assert run.cli("down").returncode == 0
        assert processes_using(run.state_dir) == []


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    import subprocess

    from stack_fixtures import SPOFLESS, free_port_block

    port = free_port_block(2)
    topology = tmp_path / "fg.yaml"
    topology.write_text(
        "name: fg\n"
        "components:\n"
        "  web:\n"
        "    kind: service\n"
        "    instances: 2\n"
        f"    port: {port}\n"
        "    run: python -m spofless.demo.app --port {port} --data {state_dir}/r.jsonl\n"
        "entry: [web]\n"
    )
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [SPOFLESS, "up", str(topology), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with stack_run(topology, state) as run:
        try:
            wait_for("both up", lambda: len(listening([port, port + 1])) == 2, timeout=30)
            wait_for(
                "state up",
                lambda: all(i["state"] == "up" for i in run.status()["instances"]),
                timeout=30,
            )
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert "web/1" in out
            assert listening([port, port + 1]) == []
            assert processes_using(state) == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_demo_app_endpoints(tmp_path: Path) -> None:
    import subprocess
    import sys

    from stack_fixtures import free_port_block

    port = free_port_block(1)
    data = tmp_path / "records.jsonl"
    app = subprocess.Popen(
        [sys.executable, "-m", "spofless.demo.app", "--port", str(port), "--data", str(data)],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("app listening", lambda: listening([port]), timeout=20)
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            assert r.status == 200 and r.read() == b"ok\n"
        for value in (b"one", b"two"):
            req = urllib.request.Request(f"{url}/write", data=value, method="POST")
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 201
        with urllib.request.urlopen(f"{url}/read", timeout=5) as r:
            records = json.load(r)["records"]
        assert [(x["id"], x["value"]) for x in records] == [(1, "one"), (2, "two")]
        with urllib.request.urlopen(f"{url}/read?id=2", timeout=5) as r:
            assert json.load(r)["value"] == "two"
        for path, status in (("/read?id=9", 404), ("/read?id=x", 400), ("/nope", 404)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{url}{path}", timeout=5)
            assert err.value.code == status
            err.value.close()
        big = urllib.request.Request(f"{url}/write", data=b"x" * 70000, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(big, timeout=5)
        assert err.value.code == 413
        err.value.close()
        assert len(data.read_text().splitlines()) == 2
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=10)
        except Exception:
            app.kill()
            app.wait(timeout=10)
    assert app.returncode == 0
