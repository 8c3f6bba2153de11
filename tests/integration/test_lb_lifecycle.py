"""Process lifecycle: SIGHUP reload and SIGTERM stop under load, two workers sharing health."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lb_fixtures import (
    Load,
    backend_state,
    free_port,
    get,
    processes,
    start_backend,
    start_lb,
    start_lb_file,
)
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """
name: reload
hosts: {{h: {{}}}}
entry: [lb]
components:
  lb: {{kind: load_balancer, instances: [h], port: {lb}, admin_port: {admin},
        routes: [{{to: {target}}}]}}
  a: {{kind: service, instances: [h], port: {a}}}
  b: {{kind: service, instances: [h], port: {b}}}
"""


def _serving_a(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> tuple[Path, tuple[int, int, int, int], subprocess.Popen[bytes]]:
    """Backends a and b, a balancer from t.yaml routing to a: (file, (lb, admin, a, b), it)."""
    a, b = start_backend(procs, "a"), start_backend(procs, "b")
    lb, admin = free_port(), free_port()
    file = tmp_path / "t.yaml"
    file.write_text(TOPOLOGY.format(lb=lb, admin=admin, target="a", a=a, b=b))
    start_lb_file(procs, file, lb, admin, log=tmp_path / "lb.log")
    wait_for("the balancer serves a", lambda: get(lb)[1] == b"a", 10, step=0.01)
    return file, (lb, admin, a, b), procs[-1]


def test_sighup_reload_switches_routes_without_dropping_requests(tmp_path: Path) -> None:
    with processes() as procs:
        file, ports, controller = _serving_a(procs, tmp_path)
        lb, admin, a, b = ports
        slow: list[tuple[int, bytes]] = []
        in_flight = threading.Thread(target=lambda: slow.append(get(lb, "/slow/1")[:2]))
        with Load(lb) as load:
            time.sleep(0.5)
            in_flight.start()
            time.sleep(0.2)
            file.write_text(TOPOLOGY.format(lb=lb, admin=admin, target="b", a=a, b=b))
            controller.send_signal(signal.SIGHUP)
            wait_for("requests reach b", lambda: load.bodies.get(b"b", 0) > 50, 10, step=0.01)
            in_flight.join(10)
        # A broken file is refused and the running settings stay.
        file.write_text("components: [")
        controller.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert get(lb)[1] == b"b"
        assert controller.poll() is None
    log = (tmp_path / "lb.log").read_text()
    assert load.errors == [], log
    assert slow == [(200, b"a")]  # the old worker finished what it had started
    assert load.bodies.get(b"a", 0) > 0
    assert "reload refused" in log


def test_sighup_refuses_a_new_listen_host(tmp_path: Path) -> None:
    """The sockets stay bound where they are: a reload that moves the host is refused."""
    with processes() as procs:
        file, ports, controller = _serving_a(procs, tmp_path)
        lb, admin, a, b = ports
        moved = TOPOLOGY.replace("hosts: {{h: {{}}}}", "hosts: {{h: {{address: 127.0.0.2}}}}")
        file.write_text(moved.format(lb=lb, admin=admin, target="b", a=a, b=b))
        controller.send_signal(signal.SIGHUP)
        log = tmp_path / "lb.log"
        wait_for(
            "the reload is refused", lambda: "reload refused" in log.read_text(), 10, step=0.01
        )
        assert get(lb)[1] == b"a"  # the running settings stay
        assert controller.poll() is None
    assert "the listen host cannot change (127.0.0.1 -> 127.0.0.2)" in log.read_text()


def test_sigterm_finishes_in_flight_requests(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, _ = start_lb(procs, ports, log=tmp_path / "lb.log")
        controller = procs[-1]
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(get(lb, "/slow/1")[0])) for _ in range(5)
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)
        controller.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(10)
        code = controller.wait(10)
    assert results == [200] * 5
    assert code == 0
    with pytest.raises(ConnectionRefusedError):
        get(lb)


def test_two_workers_share_the_health_view(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(3)]
        lb, admin = start_lb(procs, ports, "--workers", "2", log=tmp_path / "lb.log")
        wait_for("b0 up", lambda: backend_state(admin, ports[0])["status"] == "up", 10, step=0.01)
        assert len({get(lb)[1] for _ in range(30)}) == 3
        # Silent failure: only the controller's checks can see it; both workers must follow.
        os.kill(procs[0].pid, signal.SIGSTOP)
        wait_for(
            "b0 down", lambda: backend_state(admin, ports[0])["status"] == "down", 3, step=0.01
        )
        time.sleep(0.25)  # one check interval for the view to reach the workers
        time.sleep(0.6)  # worker counters reach the controller every 0.5 s
        before = backend_state(admin, ports[0])["requests"]
        answers = []
        for _ in range(100):  # a fresh connection each: SO_REUSEPORT spreads them
            t0 = time.monotonic()
            code, body, _ = get(lb, timeout=5)
            answers.append((code, body, time.monotonic() - t0))
        time.sleep(0.6)
        after = backend_state(admin, ports[0])["requests"]
    assert after == before
    assert all(code == 200 and body != b"b0" for code, body, _ in answers)
    assert max(t for _, _, t in answers) < 0.5  # nothing waited on the frozen backend
