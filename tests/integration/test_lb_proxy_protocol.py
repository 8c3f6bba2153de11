"""tcp mode with `proxy_protocol`: a real backend learns the client's address and port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lb_fixtures import (
    SERVE_EACH_IN_A_THREAD,
    backend_state,
    processes,
    start_lb,
    wait_port,
)
from waiting import wait_for

pytestmark = pytest.mark.integration

# Reads a PROXY header (v1 line or v2 binary), then one line of data; answers
# "<client address> <client port> <destination port> <the line>" and closes.
# A connection that sends nothing (a health check) is just closed.
BACKEND = (
    """
import socket, struct, sys, threading
SIG = b"\\r\\n\\r\\n\\x00\\r\\nQUIT\\n"
def exactly(c, n):
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            raise EOFError
        out += d
    return out
def line(c):
    out = b""
    while not out.endswith(b"\\n"):
        out += exactly(c, 1)
    return out
def handle(c):
    with c:
        try:
            first = exactly(c, 1)
        except EOFError:
            return
        try:
            if first == b"P":
                parts = (first + line(c)).split()
                src, sport, dport = parts[2].decode(), parts[4].decode(), parts[5].decode()
            else:
                head = first + exactly(c, 15)
                assert head[:12] == SIG and head[12] == 0x21 and head[13] == 0x11
                body = exactly(c, struct.unpack("!H", head[14:16])[0])
                src = socket.inet_ntoa(body[0:4])
                sport, dport = (str(p) for p in struct.unpack("!HH", body[8:12]))
            data = line(c).strip().decode()
            c.sendall(f"{src} {sport} {dport} {data}\\n".encode())
        except (EOFError, OSError, AssertionError) as exc:
            c.sendall(f"bad header: {exc!r}\\n".encode())
"""
    + SERVE_EACH_IN_A_THREAD
)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_backend_sees_the_client_address(tmp_path: Path, version: str) -> None:
    from free_ports import free_port

    with processes() as procs:
        backend = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", BACKEND, str(backend)]))
        wait_port(backend)
        lb, admin = start_lb(
            procs,
            [backend],
            "--mode",
            "tcp",
            "--set",
            f"proxy_protocol={version}",
            log=tmp_path / "lb.log",
        )
        wait_for(
            "backend up", lambda: backend_state(admin, backend)["status"] == "up", 10, step=0.01
        )
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", lb), timeout=10) as c:
                host, port = c.getsockname()[:2]
                c.sendall(b"hello through the balancer\n")
                answer = b""
                while d := c.recv(4096):
                    answer += d
            assert answer.decode() == f"{host} {port} {lb} hello through the balancer\n"
