"""Failover under load with default settings: kill -9, SIGSTOP and SIGCONT a backend."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path

import pytest
from lb_fixtures import Load, processes, start_backend, start_lb

pytestmark = pytest.mark.integration


def status(admin: int) -> dict[str, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    conn.request("GET", "/status")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data["backends"]  # type: ignore[no-any-return]


def wait_status(admin: int, name: str, want: str, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if status(admin)[name]["status"] == want:
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"{name} not {want} after {limit}s")


def test_kill_stop_and_resume_a_backend_under_load(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(3)]
        lb, admin = start_lb(procs, ports, log=tmp_path / "lb.log")
        names = [f"127.0.0.1:{p}" for p in ports]
        wait_status(admin, names[0], "up", 10)
        with Load(lb) as load:
            time.sleep(1.0)
            procs[0].send_signal(signal.SIGKILL)
            detect_kill = wait_status(admin, names[0], "down", 5)
            time.sleep(1.0)
            kill_errors, kill_lat = list(load.errors), max(load.latencies)
            os.kill(procs[1].pid, signal.SIGSTOP)
            detect_stop = wait_status(admin, names[1], "down", 5)
            time.sleep(1.0)
            stop_errors = list(load.errors)
            os.kill(procs[1].pid, signal.SIGCONT)
            wait_status(admin, names[1], "up", 5)
            time.sleep(1.0)
        log = (tmp_path / "lb.log").read_text()
        assert kill_errors == [], log
        assert detect_kill < 1.0
        assert kill_lat < 1.0  # generous: catches a stall, not a benchmark
        assert stop_errors == [], log  # unanswered GETs were retried when it went down
        assert detect_stop < 2.0  # defaults: 0.25 s interval, 0.25 s timeout, fall 2
        assert load.errors == []
        assert load.bodies.get(b"b1", 0) > 0 and len(load.latencies) > 200
        assert f"127.0.0.1:{ports[0]} is down" in log
