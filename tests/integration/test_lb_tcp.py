"""tcp mode under failure: kill -9 a backend under load; a frozen backend with an http check."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from lb_fixtures import (
    backend_state,
    get,
    processes,
    start_backend,
    start_lb,
)
from waiting import wait_for

pytestmark = pytest.mark.integration


class ConnectionLoad:
    """Clients in threads, a new connection per request (tcp mode balances connections)."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.log: list[tuple[float, int, bytes]] = []  # (time, status or 0, body or error)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                code, body, _ = get(self.port, timeout=5)
            except OSError as exc:
                code, body = 0, repr(exc).encode()
            self.log.append((time.monotonic(), code, body))
            time.sleep(0.002)

    def __enter__(self) -> ConnectionLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def test_kill_a_backend_under_tcp_load(tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(3)]
        lb, admin = start_lb(procs, ports, "--mode", "tcp", log=tmp_path / "lb.log")
        wait_for("b0 up", lambda: backend_state(admin, ports[0])["status"] == "up", 10, step=0.01)
        with ConnectionLoad(lb) as load:
            time.sleep(1.0)
            killed_at = time.monotonic()
            procs[0].send_signal(signal.SIGKILL)
            wait_for(
                "b0 down", lambda: backend_state(admin, ports[0])["status"] == "down", 2, step=0.01
            )
            detect = time.monotonic() - killed_at
            time.sleep(1.0)
    log = (tmp_path / "lb.log").read_text()
    errors = [(t, body) for t, code, body in load.log if code != 200]
    # Only connections already open to b0 when it died can fail (4 clients, one each).
    assert len(errors) <= 4, (errors, log)
    assert all(t < killed_at + 0.1 for t, _ in errors), errors
    late = [body for t, code, body in load.log if t > killed_at + 0.1]
    assert len(late) > 100 and b"b0" not in late
    assert detect < 1.0


@pytest.mark.parametrize(
    "check",
    [
        ["--health", "http"],
        ["--health-send", r"GET / HTTP/1.0\r\n\r\n", "--health-expect", "200 OK"],
    ],
    ids=["http", "send-expect"],
)
def test_frozen_backend_in_tcp_mode_needs_an_application_check(
    check: list[str], tmp_path: Path
) -> None:
    """A SIGSTOPped process still completes TCP handshakes (the kernel does); an http or
    send/expect check on a tcp route sees it stop answering and takes it out of rotation."""
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, admin = start_lb(procs, ports, "--mode", "tcp", *check, log=tmp_path / "lb.log")
        wait_for("b0 up", lambda: backend_state(admin, ports[0])["status"] == "up", 10, step=0.01)
        os.kill(procs[0].pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_for(
            "b0 down", lambda: backend_state(admin, ports[0])["status"] == "down", 3, step=0.01
        )
        detect = time.monotonic() - stopped_at
        answers = [get(lb, timeout=5)[:2] for _ in range(20)]
    assert detect < 2.0  # 0.25 s interval, 0.25 s timeout, fall 2
    assert answers == [(200, b"b1")] * 20


def test_closed_connections_are_released(tmp_path: Path) -> None:
    """Connections closed by both sides leave nothing behind: SIGTERM finds no work left."""
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        lb, _ = start_lb(procs, ports, "--mode", "tcp", log=tmp_path / "lb.log")
        for _ in range(20):
            assert get(lb)[0] == 200
        for _ in range(20):  # connect and close at once: a half-close before the backend is up
            socket.create_connection(("127.0.0.1", lb), 2).close()
        time.sleep(0.3)
        t0 = time.monotonic()
        procs[-1].terminate()
        code = procs[-1].wait(10)
    assert code == 0
    assert time.monotonic() - t0 < 3.0  # the drain waits for open connections only


@pytest.mark.parametrize("close_on_down", [True, False])
def test_connections_to_a_frozen_backend_are_closed(close_on_down: bool, tmp_path: Path) -> None:
    """tcp_close_on_down: a client on a backend marked down is cut off and reconnects."""
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(2)]
        flags = ["--mode", "tcp", "--health", "http"]
        if not close_on_down:
            flags += ["--set", "tcp_close_on_down=false"]
        lb, admin = start_lb(procs, ports, *flags, log=tmp_path / "lb.log")
        for p in ports:
            wait_for(
                f"{p} up", lambda p=p: backend_state(admin, p)["status"] == "up", 10, step=0.01
            )
        conns = [socket.create_connection(("127.0.0.1", lb), 5) for _ in range(4)]
        names = []
        for c in conns:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            names.append(c.recv(1024).rsplit(b"\r\n", 1)[-1])
        assert set(names) == {b"b0", b"b1"}  # round robin: two on each
        os.kill(procs[0].pid, signal.SIGSTOP)
        wait_for(
            "b0 down", lambda: backend_state(admin, ports[0])["status"] == "down", 3, step=0.01
        )
        closed = []
        for c, name in zip(conns, names, strict=True):
            c.settimeout(1.0)
            try:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = c.recv(1024)
            except TimeoutError:
                answer = b"timeout"
            except OSError:
                answer = b""
            closed.append((name, answer))
            c.close()
    for name, answer in closed:
        if name == b"b1":
            assert answer.endswith(b"b1")  # the healthy backend's clients are untouched
        elif close_on_down:
            assert answer == b""  # closed by the balancer: the client reconnects elsewhere
        else:
            assert answer == b"timeout"  # left hanging on the frozen backend
