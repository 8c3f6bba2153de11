"""`spofless rollout --surge` on a real stack: two web instances behind a load balancer.

Without a surge, replacing either instance leaves the other a single point of failure:
the rollout is refused (exit 2) and nothing changes. With `--surge 1` a temporary
instance runs the new command first, is added to the load balancer once healthy,
the two are replaced one at a time under steady load with no failed request, and the
temporary instance is drained and removed: not in `status`, not in the load balancer,
no process left. A rollout aborted (`--abort`) or killed while its temporary
instance runs leaves nothing behind either: the rollout removes it on its way out,
or, killed, the supervisor does once the rollout's lock is gone.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_fixtures import NEVER_HEALTHY, Load, admin_states, recorded, run_commands, whole
from stack_fixtures import StackRun, free_port_block, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: surgestack
hosts:
  h1: {{}}
  h2: {{}}
  h3: {{}}  # a spare machine: the temporary instance runs there
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
    instances: [h1, h2]
    port: {web}
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz, interval: 0.2, rise: 2, fall: 2}}
entry: [lb]
"""

V2 = "python -m spofless.demo.app --host {host} --port {port} --name web-{index}-v2"


@pytest.fixture
def surgestack(tmp_path: Path) -> Iterator[tuple[StackRun, int, int]]:
    web = free_port_block(2)
    lb = free_port_block(2, avoid=range(web, web + 2))
    admin = free_port_block(2, avoid=[web, web + 1, lb, lb + 1])
    path = tmp_path / "surgestack.yaml"
    path.write_text(TOPOLOGY.format(web=web, lb=lb, admin=admin))
    with stack_run(path, tmp_path / "state") as run:
        up = run.cli("up", "--detach", "--wait", "--timeout", "60")
        assert up.returncode == 0, up.stdout + up.stderr
        yield run, lb, admin


def _lb_backends(admin: int) -> list[str]:
    return [*admin_states(admin), *admin_states(admin + 1)]


def _temporaries(run: StackRun) -> list[str]:
    """The temporary instances `spofless status` shows."""
    return [i["name"] for i in run.status()["instances"] if i.get("temporary")]


def test_surge_keeps_redundancy_under_load_and_leaves_nothing_behind(
    surgestack: tuple[StackRun, int, int],
) -> None:
    run, lb, admin = surgestack
    before = run_commands(run)
    refused = run.cli("rollout", "--component", "web", "--run", V2)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "single point of failure" in refused.stderr and "--surge 1" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert run_commands(run) == before and _temporaries(run) == []

    dry = run.cli("rollout", "--component", "web", "--run", V2, "--surge", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith("1. surge: start web/2 on h3")

    seen_temporary: list[str] = []
    with Load(lb) as load:
        wait_for("traffic flows", lambda: len(load.answers) > 20, 30)
        spofless = str(Path(sys.executable).parent / "spofless")
        where = [str(run.topology), "--state-dir", str(run.state_dir)]
        what = ["--component", "web", "--run", V2, "--surge", "1", "--json"]
        driver = subprocess.Popen(
            [spofless, "rollout", *where, *what],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for("web/2 started", lambda: "web/2" in recorded(run), 60, step=0.1)
            surge_pid = recorded(run)["web/2"]["pid"]
            seen_temporary = _temporaries(run)
            out, err = driver.communicate(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(10)
        seen = len(load.answers)
        wait_for("more traffic", lambda: len(load.answers) > seen + 40, 30)
    assert driver.returncode == 0, out + err
    steps = json.loads(out)["steps"]
    assert [(s["action"], s["outcome"]) for s in steps] == [
        ("surge", "started"),
        ("replace", "replaced"),
        ("replace", "replaced"),
        ("unsurge", "removed"),
    ], steps
    assert load.failures == []
    assert "web-2-v2" in load.answers  # the temporary instance served
    assert set(load.answers[-40:]) == {"web-0-v2", "web-1-v2"}
    commands = run_commands(run)
    assert sorted(commands) == ["lb/0", "lb/1", "web/0", "web/1"]
    assert all(commands[f"web/{i}"][-1] == f"web-{i}-v2" for i in range(2))
    assert seen_temporary == ["web/2"]
    assert _temporaries(run) == [] and "web/2" not in _lb_backends(admin)
    # Its process is gone (this stack's: another test's stack may run a web-2-v2 too).
    assert surge_pid and not Path(f"/proc/{surge_pid}").exists()
    wait_for("the stack whole after the rollout", lambda: whole(run), 60)


def test_an_aborted_or_killed_rollout_leaves_no_temporary_instance(
    surgestack: tuple[StackRun, int, int],
) -> None:
    """`--abort` while the temporary instance runs: the rollout removes it on its way
    out. SIGKILL of the rollout: the supervisor sees the rollout's lock released and
    removes it (load balancers first, then the process)."""
    run, _, admin = surgestack
    spofless = str(Path(sys.executable).parent / "spofless")
    argv = [spofless, "rollout", str(run.topology), "--state-dir", str(run.state_dir)]
    aborted = subprocess.Popen(
        [*argv, "--component", "web", "--run", NEVER_HEALTHY, "--surge", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("web/2 started", lambda: "web/2" in recorded(run), 60, step=0.1)
        first = recorded(run)["web/2"]["pid"]
        abort = run.cli("rollout", "--abort")
        assert abort.returncode == 0, abort.stdout + abort.stderr
        out, _ = aborted.communicate(timeout=60)
    finally:
        if aborted.poll() is None:
            aborted.kill()
            aborted.wait(10)
    assert aborted.returncode == 1 and json.loads(out)["error"] == "aborted", out
    assert "web/2" not in recorded(run) and not Path(f"/proc/{first}").exists()
    assert "web/2" not in _lb_backends(admin)
    # A new command that never passes its check: the rollout waits on web/2.
    driver = subprocess.Popen(
        [*argv, "--component", "web", "--run", NEVER_HEALTHY, "--surge", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("web/2 started", lambda: "web/2" in recorded(run), 60, step=0.1)
        pid = recorded(run)["web/2"]["pid"]
        assert _temporaries(run) == ["web/2"]
        driver.kill()
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    wait_for("web/2 removed", lambda: "web/2" not in recorded(run), 30, step=0.1)
    assert _temporaries(run) == []
    assert not Path(f"/proc/{pid}").exists()
    assert "web/2" not in _lb_backends(admin)
    wait_for("the stack whole", lambda: whole(run), 60)
    # The next rollout with a surge runs as if nothing had happened.
    again = run.cli("rollout", "--component", "web", "--surge", "1", "--json", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _temporaries(run) == [] and "web/2" not in _lb_backends(admin)


def test_a_load_balancer_restarted_meanwhile_gets_the_temporary_instance_again(
    surgestack: tuple[StackRun, int, int],
) -> None:
    """kill -9 of a load balancer once the temporary instance serves: its supervisor
    restarts it from its file, without web/2; before taking web/0 out, the rollout
    adds web/2 to it again and waits until it is up there."""
    import signal

    run, _, admin = surgestack
    spofless = str(Path(sys.executable).parent / "spofless")
    argv = [spofless, "rollout", str(run.topology), "--state-dir", str(run.state_dir)]
    driver = subprocess.Popen(
        [*argv, "--component", "web", "--run", V2, "--surge", "1", "--pause-between", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def web2_up_on_lb0() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
            try:
                conn.request("GET", "/status")
                backends = json.loads(conn.getresponse().read())["backends"]
                return bool(backends.get("web/2", {}).get("status") == "up")
            finally:
                conn.close()

        wait_for("web/2 up on lb/0", web2_up_on_lb0, 60, step=0.1)
        old = recorded(run)["lb/0"]
        os.killpg(old["pgid"], signal.SIGKILL)
        wait_for(
            "lb/0 restarted",
            lambda: (
                recorded(run)["lb/0"]["pid"] != old["pid"]
                and recorded(run)["lb/0"]["state"] == "up"
            ),
            30,
            step=0.1,
        )
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert driver.returncode == 0, out + err
    assert "lb/0 no longer has web/2 (restarted?): adding it again" in out, out
    assert "rollout of web done" in out
    assert _temporaries(run) == [] and "web/2" not in _lb_backends(admin)
    wait_for("the stack whole", lambda: whole(run), 60)
