"""`spofless rollout` on a real stack: four web instances behind two load balancers.

Under a steady load through the load balancers, a rollout to a new command fails no
request and leaves every instance on the new command; a new command that never
passes its health check is rolled back on the first instance and the rollout stops
with the others untouched; bad requests change nothing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_fixtures import StackRun, free_port_block, stack_run
from waiting import wait_for

from spofless.stack._control import request

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: rollstack
hosts:
  h1: {{}}
  h2: {{}}
  h3: {{}}
  h4: {{}}
components:
  lb:
    kind: load_balancer
    instances: [h1, h2]
    needs: [web]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web}}]
  web:
    kind: service
    instances: [h1, h2, h3, h4]
    port: {web}
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz, interval: 0.2, rise: 2, fall: 2}}
entry: [lb]
"""

V2 = "python -m spofless.demo.app --host {host} --port {port} --name web-{index}-v2"
NEVER_HEALTHY = "python -c 'import time; time.sleep(600)'"


@pytest.fixture
def rollstack(tmp_path: Path) -> Iterator[tuple[StackRun, int]]:
    web = free_port_block(4)
    lb = free_port_block(2, avoid=range(web, web + 4))
    admin = free_port_block(2, avoid=[*range(web, web + 4), lb, lb + 1])
    path = tmp_path / "rollstack.yaml"
    path.write_text(TOPOLOGY.format(web=web, lb=lb, admin=admin))
    with stack_run(path, tmp_path / "state") as run:
        yield run, lb


def _get(port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, json.loads(response.read()).get("instance", "")
    finally:
        conn.close()


class Load:
    """Requests through both load balancers, one after another, bounded in count and time."""

    def __init__(self, lb: int) -> None:
        self.ports = [lb, lb + 1]
        self.failures: list[str] = []
        self.answers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        for i in range(20000):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                status, who = _get(self.ports[i % 2])
                if status != 200:
                    self.failures.append(f"HTTP {status}")
                self.answers.append(who)
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _commands(run: StackRun) -> dict[str, list[str]]:
    answer = asyncio.run(request(run.state_dir.resolve(), {"op": "commands"}, 10))
    return answer["commands"]  # type: ignore[no-any-return]


def _whole(run: StackRun) -> bool:
    return all(i["state"] == "up" and i["health"] == "healthy" for i in run.status()["instances"])


def test_rollout_under_load_fails_no_request_and_a_bad_version_is_rolled_back(
    rollstack: tuple[StackRun, int],
) -> None:
    run, lb = rollstack
    refused = run.cli("rollout", "--component", "web")
    assert refused.returncode == 2 and "spofless up" in refused.stderr, refused.stderr
    up = run.cli("up", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr

    # Bad input: a clear error, exit 2, nothing changed.
    before = _commands(run)
    for args, words in (
        (("--component", "nope"), "no component 'nope'"),
        (("--component", "lb", "--run", "x"), "--run replaces a service's command"),
        (("--component", "web", "--run", "x {nope}"), "unknown placeholder {nope}"),
    ):
        bad = run.cli("rollout", *args)
        assert bad.returncode in (1, 2) and words in bad.stderr + bad.stdout, bad
        assert "Traceback" not in bad.stderr
    assert _commands(run) == before
    wait_for("the stack whole again", lambda: _whole(run), 60)

    dry = run.cli("rollout", "--component", "web", "--run", V2, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("no single point of failure while it is out") == 4
    assert "drained on: lb/0, lb/1" in dry.stdout

    with Load(lb) as load:
        wait_for("traffic flows", lambda: len(load.answers) > 20, 30)
        done = run.cli("rollout", "--component", "web", "--run", V2, "--json", timeout=300)
        wait_for("traffic after the rollout", lambda: len(load.answers) > 20, 30)
        seen = len(load.answers)
        wait_for("more traffic", lambda: len(load.answers) > seen + 40, 30)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [s["outcome"] for s in result["steps"]] == ["replaced"] * 4
    assert all(s["cut"] == 0 for s in result["steps"])
    assert load.failures == []
    assert set(load.answers[-40:]) == {f"web-{i}-v2" for i in range(4)}
    commands = _commands(run)
    assert all(commands[f"web/{i}"][-1] == f"web-{i}-v2" for i in range(4))
    wait_for("the stack whole after the rollout", lambda: _whole(run), 60)

    # A version that never passes its health check: rolled back, the others untouched.
    bad = run.cli(
        "rollout",
        "--component",
        "web",
        "--run",
        NEVER_HEALTHY,
        "--health-timeout",
        "5",
        "--json",
        timeout=300,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    steps = json.loads(bad.stdout)["steps"]
    assert len(steps) == 1 and steps[0]["outcome"] == "rolled back", steps
    assert "not healthy within 5s" in steps[0]["detail"]
    assert _commands(run) == commands  # web/0 back on v2, the others never touched
    wait_for("the stack whole after the rollback", lambda: _whole(run), 60)


def _admin_state(lb_admin: int, backend: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", lb_admin, timeout=5)
    try:
        conn.request("GET", "/status")
        return str(json.loads(conn.getresponse().read())["backends"][backend]["admin"])
    finally:
        conn.close()


def test_a_killed_rollout_leaves_nothing_drained_for_good(
    rollstack: tuple[StackRun, int],
) -> None:
    """One rollout at a time; a rollout killed with SIGKILL while an instance is drained
    is found by --status, and --abort (or the next rollout) puts it back in rotation;
    the next rollout replaces the broken instance first and the stack is whole again."""
    import subprocess
    import sys

    run, _ = rollstack
    admin0 = int(run.topology.read_text().split("admin_port: ")[1].split()[0])
    up = run.cli("up", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    spofless = str(Path(sys.executable).parent / "spofless")
    argv = [spofless, "rollout", str(run.topology), "--state-dir", str(run.state_dir)]
    slow = subprocess.Popen(
        [*argv, "--component", "web", "--run", NEVER_HEALTHY, "--health-timeout", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "web/0 drained and being replaced",
            lambda: "replacing" in run.cli("rollout", "--status").stdout,
            30,
        )
        assert _admin_state(admin0, "web/0") == "drain"
        second = run.cli("rollout", "--component", "web")
        assert second.returncode == 2 and "a rollout already runs here" in second.stderr
        slow.kill()
        slow.wait(10)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait(10)
    status = run.cli("rollout", "--status").stdout
    assert "its process is gone" in status and "drained: web/0" in status, status
    assert _admin_state(admin0, "web/0") == "drain"  # nobody put it back yet

    abort = run.cli("rollout", "--abort")
    assert abort.returncode == 0 and "web/0" in abort.stdout, abort.stdout + abort.stderr
    assert _admin_state(admin0, "web/0") == "enabled"

    # web/0 runs the never-healthy command: the next rollout repairs it first.
    plan = run.cli("rollout", "--component", "web", "--run", V2, "--dry-run")
    assert plan.stdout.splitlines()[0].startswith("1. replace web/0: it is not doing its job")
    fixed = run.cli("rollout", "--component", "web", "--run", V2, "--json", timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    wait_for("the stack whole again", lambda: _whole(run), 60)
    assert "done" in run.cli("rollout", "--status").stdout
