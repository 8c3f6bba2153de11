"""`spofless rollout` on a real stack: four web instances behind two load balancers.

Under a steady load through the load balancers, a rollout to a new command fails no
request and leaves every instance on the new command; a new command that never
passes its health check is rolled back on the first instance and the rollout stops
with the others untouched; bad requests change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_fixtures import NEVER_HEALTHY, V2, Load, admin_states, run_commands, whole
from stack_fixtures import StackRun, free_port_block, stack_run
from waiting import wait_for

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


@pytest.fixture
def rollstack(tmp_path: Path) -> Iterator[tuple[StackRun, int]]:
    web = free_port_block(4)
    lb = free_port_block(2, avoid=range(web, web + 4))
    admin = free_port_block(2, avoid=[*range(web, web + 4), lb, lb + 1])
    path = tmp_path / "rollstack.yaml"
    path.write_text(TOPOLOGY.format(web=web, lb=lb, admin=admin))
    with stack_run(path, tmp_path / "state") as run:
        yield run, lb


def test_rollout_under_load_fails_no_request_and_a_bad_version_is_rolled_back(
    rollstack: tuple[StackRun, int],
) -> None:
    run, lb = rollstack
    refused = run.cli("rollout", "--component", "web")
    assert refused.returncode == 2 and "spofless up" in refused.stderr, refused.stderr
    up = run.cli("up", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr

    # Bad input: a clear error, exit 2, nothing changed.
    before = run_commands(run)
    for args, words in (
        (("--component", "nope"), "no component 'nope'"),
        (("--component", "lb", "--run", "x"), "--run replaces a service's command"),
        (("--component", "web", "--run", "x {nope}"), "unknown placeholder {nope}"),
    ):
        bad = run.cli("rollout", *args)
        assert bad.returncode in (1, 2) and words in bad.stderr + bad.stdout, bad
        assert "Traceback" not in bad.stderr
    assert run_commands(run) == before
    wait_for("the stack whole again", lambda: whole(run), 60)

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
    commands = run_commands(run)
    assert all(commands[f"web/{i}"][-1] == f"web-{i}-v2" for i in range(4))
    wait_for("the stack whole after the rollout", lambda: whole(run), 60)

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
    assert run_commands(run) == commands  # web/0 back on v2, the others never touched
    wait_for("the stack whole after the rollback", lambda: whole(run), 60)


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
        assert admin_states(admin0)["web/0"] == "drain"
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
    assert admin_states(admin0)["web/0"] == "drain"  # nobody put it back yet

    abort = run.cli("rollout", "--abort")
    assert abort.returncode == 0 and "web/0" in abort.stdout, abort.stdout + abort.stderr
    assert admin_states(admin0)["web/0"] == "enabled"

    # web/0 runs the never-healthy command: the next rollout repairs it first.
    plan = run.cli("rollout", "--component", "web", "--run", V2, "--dry-run")
    assert plan.stdout.splitlines()[0].startswith("1. replace web/0: it is not doing its job")
    fixed = run.cli("rollout", "--component", "web", "--run", V2, "--json", timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    wait_for("the stack whole again", lambda: whole(run), 60)
    assert "done" in run.cli("rollout", "--status").stdout
