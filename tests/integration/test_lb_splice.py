"""tcp mode with bulk data: zero-copy splice(2), bytes intact both ways, half-close, failures."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lb_fixtures import (
    SERVE_EACH_IN_A_THREAD,
    backend_state,
    get,
    processes,
    start_lb,
    wait_port,
)
from waiting import wait_for

pytestmark = pytest.mark.integration

MIB = 1 << 20

# A bulk backend, one thread per connection. First line from the client:
#   SEND n   -> n bytes of the deterministic pattern, then close
#   SINK     -> read to EOF, answer the sha256 of what came and close
# A connection that sends nothing (a health check) is just closed. With a second
# argument N it speaks first instead: N bytes of the pattern as soon as a connection
# is accepted, so that its first bulk read can come before the balancer has adopted
# the connection.
BULK = (
    """
import hashlib, socket, sys, threading
BLOCK = bytes(range(256)) * 4096  # 1 MiB
FIRST = int(sys.argv[2]) if len(sys.argv) > 2 else 0
def line(c):
    out = b""
    while not out.endswith(b"\\n"):
        d = c.recv(1)
        if not d:
            return None
        out += d
    return out.strip()
def send(c, left):
    while left > 0:
        chunk = BLOCK[: min(left, len(BLOCK))]
        c.sendall(chunk)
        left -= len(chunk)
def handle(c):
    with c:
        try:
            if FIRST:
                send(c, FIRST)
                return
            cmd = line(c)
            if cmd is None:
                return
            if cmd.startswith(b"SEND "):
                send(c, int(cmd[5:]))
            elif cmd == b"SINK":
                h = hashlib.sha256()
                while d := c.recv(1 << 20):
                    h.update(d)
                c.sendall(h.hexdigest().encode() + b"\\n")
        except OSError:
            pass
"""
    + SERVE_EACH_IN_A_THREAD
)

BLOCK = bytes(range(256)) * 4096


def start_bulk(procs: list[subprocess.Popen[bytes]], *args: str) -> int:
    from free_ports import free_port

    port = free_port()
    procs.append(subprocess.Popen([sys.executable, "-c", BULK, str(port), *args]))
    wait_port(port)
    return port


def pattern_digest(n: int) -> str:
    h = hashlib.sha256()
    left = n
    while left > 0:
        chunk = BLOCK[: min(left, len(BLOCK))]
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def download(port: int, n: int, *, timeout: float = 30.0) -> tuple[int, str]:
    """Ask for n bytes through the balancer; (bytes received, their sha256)."""
    h = hashlib.sha256()
    got = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"SEND %d\n" % n)
        while d := s.recv(MIB):
            h.update(d)
            got += len(d)
    return got, h.hexdigest()


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
def test_bulk_download_is_intact_and_spliced_by_default(tmp_path: Path, splice: bool) -> None:
    with processes() as procs:
        backend = start_bulk(procs)
        extra = [] if splice else ["--set", "tcp_splice=false"]
        lb, admin = start_lb(procs, [backend], "--mode", "tcp", *extra, log=tmp_path / "lb.log")
        wait_for(
            "backend up", lambda: backend_state(admin, backend)["status"] == "up", 10, step=0.01
        )
        n = 64 * MIB + 12345  # not a multiple of any buffer size
        got, digest = download(lb, n)
        assert got == n
        assert digest == pattern_digest(n)
        if splice:
            wait_for(
                "spliced",
                lambda: backend_state(admin, backend).get("spliced", 0) >= 1,
                5,
                step=0.01,
            )
            _, metrics, _ = get(admin, "/metrics")
            assert f'spofless_lb_spliced_total{{backend="127.0.0.1:{backend}"}} 1.0' in (
                metrics.decode()
            )
        else:
            time.sleep(1.2)  # two stats rounds
            assert backend_state(admin, backend).get("spliced", 0) == 0
        # Small exchanges stay on the copying path and still work.
        got, digest = download(lb, 1000)
        assert (got, digest) == (1000, pattern_digest(1000))


def test_backend_that_speaks_first_with_bulk_data(tmp_path: Path) -> None:
    """The backend's first bytes are bulk and may arrive before the balancer has adopted
    its connection: every byte still arrives, in order, on every connection."""
    n = 8 * MIB + 7
    with processes() as procs:
        backend = start_bulk(procs, str(n))
        lb, admin = start_lb(procs, [backend], "--mode", "tcp", log=tmp_path / "lb.log")
        wait_for(
            "backend up", lambda: backend_state(admin, backend)["status"] == "up", 10, step=0.01
        )
        for _ in range(10):
            h = hashlib.sha256()
            got = 0
            with socket.create_connection(("127.0.0.1", lb), timeout=30) as s:
                while d := s.recv(MIB):
                    h.update(d)
                    got += len(d)
            assert (got, h.hexdigest()) == (n, pattern_digest(n))
        wait_for(
            "spliced", lambda: backend_state(admin, backend).get("spliced", 0) >= 1, 5, step=0.01
        )


def test_bulk_upload_then_half_close_gets_the_answer(tmp_path: Path) -> None:
    """Client -> backend bulk, then the client's half-close reaches the backend (EOF), and
    the backend's answer still comes back on the other direction."""
    with processes() as procs:
        backend = start_bulk(procs)
        lb, admin = start_lb(procs, [backend], "--mode", "tcp", log=tmp_path / "lb.log")
        wait_for(
            "backend up", lambda: backend_state(admin, backend)["status"] == "up", 10, step=0.01
        )
        payload = os.urandom(MIB)
        h = hashlib.sha256()
        with socket.create_connection(("127.0.0.1", lb), timeout=30) as s:
            s.sendall(b"SINK\n")
            for _ in range(48):
                s.sendall(payload)
                h.update(payload)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while d := s.recv(4096):
                answer += d
        assert answer.strip().decode() == h.hexdigest()
        wait_for(
            "spliced", lambda: backend_state(admin, backend).get("spliced", 0) >= 1, 5, step=0.01
        )


def test_backend_killed_mid_transfer_ends_the_client_connection(tmp_path: Path) -> None:
    """kill -9 of the backend during a spliced transfer: the client sees the end (no hang),
    the worker survives and the next connection goes to the other backend."""
    with processes() as procs:
        doomed = start_bulk(procs)
        other = start_bulk(procs)
        lb, admin = start_lb(procs, [doomed, other], "--mode", "tcp", log=tmp_path / "lb.log")
        for p in (doomed, other):
            wait_for(
                f"{p} up", lambda p=p: backend_state(admin, p)["status"] == "up", 10, step=0.01
            )
        victim = procs[0]
        ended_at = None
        # Round robin: one of the first two connections goes to `doomed`.
        conns = [socket.create_connection(("127.0.0.1", lb), timeout=20) for _ in range(2)]
        try:
            for c in conns:
                c.sendall(b"SEND %d\n" % (4096 * MIB))  # far more than will be read
            got = [0, 0]
            deadline = time.monotonic() + 20
            while min(got) < 8 * MIB and time.monotonic() < deadline:
                for i, c in enumerate(conns):
                    got[i] += len(c.recv(MIB))
            assert min(got) >= 8 * MIB, got
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            t0 = time.monotonic()
            ended = [False, False]
            deadline = t0 + 15
            while not any(ended) and time.monotonic() < deadline:
                for i, c in enumerate(conns):
                    if ended[i]:
                        continue
                    try:
                        ended[i] = c.recv(MIB) == b""
                    except ConnectionResetError:
                        ended[i] = True
            ended_at = time.monotonic() - t0
            assert any(ended), "no client connection ended within 15 s of the kill"
        finally:
            for c in conns:
                c.close()
        assert ended_at is not None and ended_at < 15
        got_small, digest = download(lb, 4096)
        assert (got_small, digest) == (4096, pattern_digest(4096))
