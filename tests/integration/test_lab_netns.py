"""The lab with real namespaces, bridges and links: reachability, latency, faults, teardown."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_fixtures import (
    CONTROL,
    EchoServer,
    echo_rtt_ms,
    ip_state,
    require_lab,
    small_topology,
)

from spofless.lab import Lab, LabError

pytestmark = [pytest.mark.lab, pytest.mark.integration]


def test_hosts_reach_each_other_with_the_configured_latency(small_lab: tuple[Lab, object]) -> None:
    lab, _ = small_lab
    server = EchoServer(lab, "eu1")
    try:
        same_zone = echo_rtt_ms(lab, "eu2", server)
        other_zone = echo_rtt_ms(lab, "eu3", server)
        other_region = echo_rtt_ms(lab, "us1", server)
        from_control = echo_rtt_ms(lab, CONTROL, server)
    finally:
        server.stop()
    assert same_zone is not None and other_zone is not None and other_region is not None
    assert from_control is not None
    # Region latency is 40 ms one way: a round trip takes at least 80 ms; generous top.
    assert 78 <= other_region < 400, other_region
    assert other_zone < 40, other_zone
    assert same_zone < other_zone + 5


def test_cut_host_fails_connections_and_restore_heals(small_lab: tuple[Lab, object]) -> None:
    lab, _ = small_lab
    server = EchoServer(lab, "eu1")
    try:
        assert echo_rtt_ms(lab, "eu2", server) is not None
        assert lab.cut("host:eu1") == "host:eu1"
        assert echo_rtt_ms(lab, "eu2", server, timeout=1.0) is None
        assert echo_rtt_ms(lab, "us1", server, timeout=1.0) is None
        assert lab.status()["hosts"][0]["cut"] is True
        assert lab.restore("eu1") == ["host:eu1"]
        assert echo_rtt_ms(lab, "eu2", server) is not None
        assert echo_rtt_ms(lab, "us1", server) is not None
    finally:
        server.stop()


def test_cut_zone_and_region(small_lab: tuple[Lab, object]) -> None:
    # Short timeouts only where unreachable is expected; a loaded machine answers late.
    lab, _ = small_lab
    server = EchoServer(lab, "eu1")
    try:
        lab.cut("zone:eu/a")
        # Inside the cut zone all is well; outside, the zone is gone.
        assert echo_rtt_ms(lab, "eu2", server) is not None
        assert echo_rtt_ms(lab, "eu3", server, timeout=1.0) is None
        lab.restore()
        lab.cut("region:us")
        assert echo_rtt_ms(lab, "eu3", server) is not None
        assert echo_rtt_ms(lab, "us1", server, timeout=1.0) is None
        lab.restore("region:us")
        assert echo_rtt_ms(lab, "us1", server) is not None
    finally:
        server.stop()


def test_added_latency_and_loss_show_and_go(small_lab: tuple[Lab, object]) -> None:
    lab, _ = small_lab
    server = EchoServer(lab, "eu1")
    try:
        base = echo_rtt_ms(lab, "eu3", server)
        assert base is not None
        lab.impair("zone:eu/b", latency_ms=50)
        slow = echo_rtt_ms(lab, "eu3", server)
        # +50 ms each way on one crossing: +100 ms a round trip.
        assert slow is not None and slow >= base + 95, (base, slow)
        lab.impair("zone:eu/b", loss_pct=100 - 1e-9)
        assert echo_rtt_ms(lab, "eu3", server, timeout=1.0) is None
        lab.restore("zone:eu/b")
        healed = echo_rtt_ms(lab, "eu3", server)
        assert healed is not None and healed < base + 50, (base, healed)
    finally:
        server.stop()


def test_pause_resume_kill_reach_only_the_hosts_processes(small_lab: tuple[Lab, object]) -> None:
    lab, _ = small_lab
    sleeper = lab.popen("eu2", ["sleep", "60"])
    other = lab.popen("eu3", ["sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while sleeper.pid not in lab.pids("eu2") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lab.pids("eu2") == [sleeper.pid]
        assert lab.pause("eu2") == [sleeper.pid]
        assert _wait_state(sleeper.pid, stopped=True)
        assert lab.resume("eu2") == [sleeper.pid]
        assert _wait_state(sleeper.pid, stopped=False)
        assert lab.kill("eu2") == [sleeper.pid]
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None  # another host's process is untouched
    finally:
        for proc in (sleeper, other):
            proc.kill()
            proc.wait(timeout=10)


def _wait_state(pid: int, stopped: bool) -> bool:
    """Whether `pid` reaches (or stays out of) the stopped state within 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if (state == "T") == stopped:
            return True
        time.sleep(0.02)
    return False


def test_teardown_leaves_nothing_and_is_idempotent(tmp_path: Path) -> None:
    require_lab()
    topology = small_topology(tmp_path)
    lab = Lab.of(topology, state_dir=tmp_path / "labstate", lab_id=secrets.token_hex(3))
    netns_before, links_before = ip_state()
    try:
        Lab.up(topology, lab.state_dir, lab.lab_id)
        plan = lab.plan
        assert all(os.path.exists(f"/run/netns/{n}") for n in plan.namespaces)
        # A process left running in the lab is stopped by the teardown.
        stray = lab.popen("us1", ["sleep", "60"])
        with pytest.raises(LabError, match="already up"):
            Lab.up(topology, lab.state_dir, lab.lab_id)
    finally:
        removed = lab.down()
    assert sorted(removed) == sorted(plan.namespaces)
    assert stray.wait(timeout=10) is not None
    assert lab.down() == []
    netns_after, links_after = ip_state()
    ours = {n for n in netns_after.split() if n.startswith(f"spf{lab.lab_id}-")}
    assert not ours
    assert set(links_before.split()) <= set(links_after.split())
    assert not set(links_after.split()) - set(links_before.split()) & {"core", "h0", "zl0", "rh0"}
    assert not list(lab.state_dir.glob(f"{lab.lab_id}*"))
    assert netns_before is not None


def test_teardown_after_a_crash(tmp_path: Path) -> None:
    """The relay killed, the state file kept: teardown still removes everything."""
    require_lab()
    topology = small_topology(tmp_path)
    lab = Lab.of(topology, state_dir=tmp_path / "labstate", lab_id=secrets.token_hex(3))
    try:
        Lab.up(topology, lab.state_dir, lab.lab_id)
        state = lab.state()
        if state.relay_pid is not None:
            os.kill(state.relay_pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while lab.status()["up"] and time.monotonic() < deadline:
                time.sleep(0.02)
            assert lab.status()["up"] is False
        # A second `up` over the remains cleans them first.
        Lab.up(topology, lab.state_dir, lab.lab_id)
        assert lab.status()["up"] is True
    finally:
        lab.down()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"spf{lab.lab_id}-")]


def test_cli_up_status_fault_down(tmp_path: Path) -> None:
    require_lab()
    small_topology(tmp_path)
    file = str(tmp_path / "lab.yaml")
    env = {**os.environ, "SPOFLESS_LAB_STATE_DIR": str(tmp_path / "labstate")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).parent / "spofless"), "lab", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    try:
        up = cli("up", file)
        assert up.returncode == 0, up.stderr
        assert "10.77.0.10" in up.stdout
        assert cli("fault", file, "cut", "eu1").stdout.strip() == "cut host:eu1"
        bad = cli("fault", file, "latency", "eu1", "10")
        assert bad.returncode == 2 and "zone and region links" in bad.stderr
        status = cli("status", file)
        assert status.returncode == 0 and "CUT" in status.stdout
        assert cli("fault", file, "restore").stdout.strip() == "restored host:eu1"
        ran = cli("exec", file, "us1", "--", "ip", "-o", "-4", "addr", "show", "eth0")
        assert "10.77.0.13/16" in ran.stdout, ran.stderr
    finally:
        down = cli("down", file)
    assert down.returncode == 0, down.stderr
    assert cli("status", file).returncode == 1
