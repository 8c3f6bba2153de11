"""The admin API against a real balancer: token, drain, disable/enable, /metrics."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lb_fixtures import (
    Load,
    backend_state,
    get,
    processes,
    start_backend,
    start_lb,
)
from waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def test_a_token_is_required_off_loopback() -> None:
    spofless = str(Path(sys.executable).parent / "spofless")
    args = ["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:2", "--admin", "0.0.0.0:8081"]
    proc = subprocess.run(
        [spofless, "lb", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "set an admin token" in proc.stderr and "Traceback" not in proc.stderr


def test_token_checked_when_set(tmp_path: Path) -> None:
    with processes() as procs:
        port = start_backend(procs, "b0")
        _, admin = start_lb(procs, [port], "--admin-token", TOKEN, log=tmp_path / "lb.log")
        assert get(admin, "/status")[0] == 401
        assert get(admin, "/status", {"Authorization": "Bearer nope"})[0] == 401
        assert get(admin, "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        code, _, _ = get(
            admin, f"/backends/127.0.0.1:{port}/drain", method="POST"
        )  # no token: nothing changes
        assert code == 401
        code, body, _ = get(admin, "/status", {"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and b'"admin": "enabled"' in body


def _post(admin: int, port: int, action: str) -> int:
    return get(admin, f"/backends/127.0.0.1:{port}/{action}", method="POST")[0]


def test_drain_disable_enable_and_metrics(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, admin = start_lb(procs, ports, log=tmp_path / "lb.log")
        wait_for("b0 up", lambda: backend_state(admin, ports[0])["status"] == "up", 10, step=0.01)
        # Round robin in one worker: two concurrent slow requests, one on each backend.
        slow: list[tuple[int, bytes]] = []
        threads = [
            threading.Thread(target=lambda: slow.append(get(lb, "/slow/1")[:2])) for _ in range(2)
        ]
        for t in threads:
            t.start()
            time.sleep(0.05)
        time.sleep(0.2)
        assert _post(admin, ports[0], "drain") == 200
        drained = [get(lb)[1] for _ in range(20)]
        for t in threads:
            t.join(10)
        assert backend_state(admin, ports[0])["admin"] == "drain"
        assert _post(admin, ports[0], "enable") == 200
        enabled = [get(lb)[1] for _ in range(20)]
        assert _post(admin, ports[1], "disable") == 200
        disabled = [get(lb)[1] for _ in range(20)]
        assert _post(admin, ports[1], "enable") == 200
        unknown = get(admin, "/backends/nope/drain", method="POST")[0]
        wrong_method = get(admin, f"/backends/127.0.0.1:{ports[0]}/drain")[0]
        time.sleep(0.6)  # worker counters reach the controller every 0.5 s
        metrics = get(admin, "/metrics")[1].decode()
    assert sorted(slow) == [(200, b"b0"), (200, b"b1")]  # the open request on b0 finished
    assert set(drained) == {b"b1"}
    assert set(enabled) == {b"b0", b"b1"}
    assert set(disabled) == {b"b0"}
    assert (unknown, wrong_method) == (404, 405)
    b0 = f'backend="127.0.0.1:{ports[0]}"'
    assert f'spofless_lb_responses_total{{{b0},code="2xx"}}' in metrics
    assert f"spofless_lb_backend_up{{{b0}}} 1.0" in metrics
    assert f'spofless_lb_request_duration_seconds_bucket{{{b0},le="+Inf"}}' in metrics
    for name in ("retries_total", "connect_failures_total", "ejections_total", "in_flight"):
        assert f"spofless_lb_{name}{{{b0}}}" in metrics
    count = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(f'spofless_lb_responses_total{{{b0},code="2xx"}}')
    )
    assert count >= 21  # the slow one, 20 while enabled, and 20 while b1 was disabled


def test_a_drain_is_complete_when_every_worker_reports_after_it(tmp_path: Path) -> None:
    """A drain answers the view it is in; /status says when every worker has applied it
    (workers_view_seq) and the in-flight count taken after it: what `rollout` waits on."""
    import json

    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, admin = start_lb(procs, ports, "--workers", "2", log=tmp_path / "lb.log")
        wait_for("b0 up", lambda: backend_state(admin, ports[0])["status"] == "up", 10, step=0.01)
        name = f"127.0.0.1:{ports[0]}"
        slow: list[tuple[int, bytes]] = []
        threads = [threading.Thread(target=lambda: slow.append(get(lb, "/slow/2")[:2]))]
        threads += [threading.Thread(target=lambda: slow.append(get(lb, "/slow/2")[:2]))]
        for t in threads:
            t.start()
        wait_for(
            "a request in flight on b0",
            lambda: backend_state(admin, ports[0])["active"] >= 1,
            5,
            step=0.02,
        )
        code, body, _ = get(admin, f"/backends/{name}/drain", method="POST")
        seq = json.loads(body)["view_seq"]

        def status() -> dict[str, object]:
            return json.loads(get(admin, "/status")[1])  # type: ignore[no-any-return]

        wait_for("every worker applied the drain", lambda: status()["workers_view_seq"] >= seq, 5)
        in_flight_after = status()["backends"][name]["active"]  # type: ignore[index]
        for t in threads:
            t.join(10)
        wait_for(
            "the drained backend idle",
            lambda: (
                status()["workers_view_seq"] >= seq and status()["backends"][name]["active"] == 0
            ),  # type: ignore[index]
            10,
        )
    assert code == 200 and seq >= 1
    assert in_flight_after >= 1  # the open request is still counted after the drain
    assert [code for code, _ in slow] == [200, 200]  # and it finished


def test_a_backend_added_and_removed_at_runtime_under_load(tmp_path: Path) -> None:
    """Added through the admin API: it serves once healthy, a reload (SIGHUP) keeps it
    (and a drain), a removal drains it first; no request fails on the way."""
    import json
    import signal

    from lb_fixtures import free_port, start_lb_file

    topology = (
        "name: runtime\nhosts: {{h: {{}}}}\nentry: [lb]\ncomponents:\n"
        "  lb: {{kind: load_balancer, instances: [h], port: {lb}, admin_port: {admin},\n"
        "        workers: 2, routes: [{{to: a}}]}}\n"
        "  a: {{kind: service, instances: [h], port: {a}}}\n"
    )
    with processes() as procs:
        a, extra = start_backend(procs, "a"), start_backend(procs, "x")
        lb, admin = free_port(), free_port()
        file = tmp_path / "t.yaml"
        file.write_text(topology.format(lb=lb, admin=admin, a=a))
        start_lb_file(procs, file, lb, admin, log=tmp_path / "lb.log")
        controller = procs[-1]
        wait_for("a serves", lambda: get(lb)[1] == b"a", 10, step=0.01)
        body = json.dumps({"name": "a/9", "host": "127.0.0.1", "port": extra}).encode()

        def status() -> dict[str, Any]:
            return json.loads(get(admin, "/status")[1])  # type: ignore[no-any-return]

        with Load(lb) as load:
            time.sleep(0.3)
            added = _post_body(admin, "/routes/a/backends", body)
            wait_for("x serves", lambda: load.bodies.get(b"x", 0) > 20, 15, step=0.05)
            assert status()["backends"]["a/9"]["added"] is True
            # A reload keeps it, and its admin state.
            assert get(admin, "/backends/a%2F9/drain", method="POST")[0] == 200
            controller.send_signal(signal.SIGHUP)
            wait_for("the reload done", lambda: _reloaded(tmp_path / "lb.log"), 15, step=0.05)
            after_reload = status()["backends"]["a/9"]
            assert get(admin, "/backends/a%2F9/enable", method="POST")[0] == 200
            seen = load.bodies.get(b"x", 0)
            wait_for("x serves again", lambda: load.bodies.get(b"x", 0) > seen + 20, 15, 0.05)
            removing = get(admin, "/backends/a%2F9/remove", method="POST")
            wait_for("a/9 gone", lambda: "a/9" not in status()["backends"], 15, step=0.05)
            served = load.bodies.get(b"x", 0)
            time.sleep(0.5)
        still = load.bodies.get(b"x", 0)
    assert added[0] == 200, added
    assert (after_reload["added"], after_reload["admin"]) == (True, "drain")
    assert removing[0] == 202 and json.loads(removing[1])["removing"] is True
    assert still == served  # nothing is sent to it once removed
    assert load.errors == [], (tmp_path / "lb.log").read_text()[-3000:]


def _reloaded(log: Path) -> bool:
    return "reloaded;" in log.read_text()


def _post_body(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
