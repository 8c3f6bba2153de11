"""Active-passive routes and slow start with real backends and a real `spofless lb`.

Two primaries and a backup: under steady load every primary is killed with kill -9
(traffic moves to the backup), then one comes back (traffic moves back after `rise`
checks), with no failed request; the hand-overs are logged, counted and shown.
A backend enabled again after a drain gets a smaller share first (slow start).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lb_fixtures import BACKEND, Load, get, lb_status, processes, start_backend, start_lb, wait_port
from waiting import wait_for

pytestmark = pytest.mark.integration


def _restart_backend(procs: list[subprocess.Popen[bytes]], name: str, port: int) -> None:
    procs.append(subprocess.Popen([sys.executable, "-c", BACKEND, name, str(port)]))
    wait_port(port)


def _route(admin: int) -> dict[str, Any]:
    return lb_status(admin)["routes"]["default"]  # type: ignore[no-any-return]


def _all_up(admin: int) -> bool:
    return all(b["status"] == "up" for b in lb_status(admin)["backends"].values())


def _metric(admin: int, line_start: str) -> float:
    text = get(admin, "/metrics")[1].decode()
    return next(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(line_start))


def test_http_failover_to_the_backup_and_failback_lose_no_request(tmp_path: Path) -> None:
    log = tmp_path / "lb.log"
    with processes() as procs:
        p0, p1, b0 = (start_backend(procs, name) for name in ("p0", "p1", "b0"))
        lb, admin = start_lb(
            procs, [p0, p1], "--backup", f"127.0.0.1:{b0}", "--workers", "2", log=log
        )
        wait_for("every backend up", lambda: _all_up(admin), 10)
        route = _route(admin)
        assert route["serving"] == [f"127.0.0.1:{p0}", f"127.0.0.1:{p1}"]
        assert route["backups"] == [f"127.0.0.1:{b0}"] and not route["on_backup"]
        with Load(lb, clients=4) as load:
            wait_for("steady load", lambda: len(load.latencies) > 200, 10)
            assert load.bodies.get(b"b0", 0) == 0  # the backup stands by
            procs[0].send_signal(signal.SIGKILL)
            procs[1].send_signal(signal.SIGKILL)
            wait_for("the route on its backup", lambda: _route(admin)["on_backup"], 5)
            served = load.bodies.get(b"b0", 0)
            wait_for("the backup serving", lambda: load.bodies.get(b"b0", 0) > served + 200, 10)
            failover_errors = list(load.errors)

            _restart_backend(procs, "p0", p0)
            wait_for("the failback", lambda: not _route(admin)["on_backup"], 10)
            back = load.bodies.get(b"p0", 0)
            wait_for("p0 serving again", lambda: load.bodies.get(b"p0", 0) > back + 200, 10)
            at_failback = load.bodies.get(b"b0", 0)
            time.sleep(0.5)
            backup_after = load.bodies.get(b"b0", 0) - at_failback
        # Back to full redundancy: the other primary too.
        _restart_backend(procs, "p1", p1)
        wait_for("every backend up again", lambda: _all_up(admin), 10)
        route = _route(admin)
        handovers = 'spofless_lb_route_handovers_total{route="default",to='
        failovers = _metric(admin, handovers + '"backups"}')
        failbacks = _metric(admin, handovers + '"primaries"}')
        on_backup = _metric(admin, 'spofless_lb_route_on_backup{route="default"}')
    text = log.read_text()
    assert failover_errors == [], text
    assert load.errors == [], text
    assert backup_after == 0  # after the failback the backup gets nothing new
    assert route["serving"] == [f"127.0.0.1:{p0}", f"127.0.0.1:{p1}"]
    assert (route["failovers"], route["failbacks"], route["on_backup"]) == (1, 1, False)
    assert (failovers, failbacks, on_backup) == (1.0, 1.0, 0.0)
    assert f"route default failed over to its backups 127.0.0.1:{b0}" in text
    assert f"route default failed back to its primaries 127.0.0.1:{p0}" in text


def _tcp_get(port: int) -> bytes:
    """One request on a fresh connection (tcp mode: the balancer picks per connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 2:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return data.partition(b"\r\n\r\n")[2]


def test_tcp_new_connections_go_to_the_backup_and_back(tmp_path: Path) -> None:
    log = tmp_path / "lb.log"
    with processes() as procs:
        p0, p1, b0 = (start_backend(procs, name) for name in ("p0", "p1", "b0"))
        lb, admin = start_lb(
            procs, [p0, p1], "--backup", f"127.0.0.1:{b0}", "--mode", "tcp", log=log
        )
        wait_for("every backend up", lambda: _all_up(admin), 10)
        assert {_tcp_get(lb) for _ in range(10)} == {b"p0", b"p1"}
        procs[0].send_signal(signal.SIGKILL)
        procs[1].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        procs[1].wait(5)
        # At once, before any check saw them down: the refused connects are retried,
        # the last on the backup.
        during = [_tcp_get(lb) for _ in range(50)]
        wait_for("the route on its backup", lambda: _route(admin)["on_backup"], 5)
        _restart_backend(procs, "p1", p1)
        seen: list[bytes] = []
        wait_for("the failback", lambda: seen.append(_tcp_get(lb)) or seen[-1] == b"p1", 10)
        _restart_backend(procs, "p0", p0)
        wait_for("every backend up again", lambda: _all_up(admin), 10)
        after = {_tcp_get(lb) for _ in range(10)}
        route = _route(admin)
    assert set(during) == {b"b0"}, log.read_text()
    assert set(seen) <= {b"b0", b"p1"}
    assert after == {b"p0", b"p1"}
    assert (route["failovers"], route["failbacks"]) == (1, 1)


def test_a_backend_enabled_after_a_drain_gets_a_smaller_share_first(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, admin = start_lb(procs, ports, "--set", "slow_start=4s", log=tmp_path / "lb.log")
        wait_for("every backend up", lambda: _all_up(admin), 10)
        name = f"127.0.0.1:{ports[1]}"
        assert get(admin, f"/backends/{name}/drain", method="POST")[0] == 200
        assert {get(lb)[1] for _ in range(10)} == {b"b0"}
        assert get(admin, f"/backends/{name}/enable", method="POST")[0] == 200
        ramping = lb_status(admin)["backends"][name]["weight_now"]
        first = _share_for(lb, 1.0)
        wait_for("the ramp's end", lambda: lb_status(admin)["backends"][name]["weight_now"] == 1, 8)
        full = _share_for(lb, 1.0)
    # The first second: about 10-35 % of b0's share (the ramp from 10 %); then equal.
    assert ramping < 0.5
    assert first[b"b1"] < 0.5 * first[b"b0"], first
    assert full[b"b1"] > 0.7 * full[b"b0"], full


def _share_for(port: int, seconds: float) -> dict[bytes, int]:
    """Requests per backend body, one keep-alive client for `seconds`."""
    import http.client

    counts = {b"b0": 0, b"b1": 0}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.request("GET", "/")
        body = conn.getresponse().read()
        counts[body] = counts.get(body, 0) + 1
    conn.close()
    return counts
