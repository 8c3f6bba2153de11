"""Real backends and a real `spofless lb` process on 127.0.0.1, always stopped."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from free_ports import free_port

BACKEND = """
import asyncio, sys
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        while b"\\r\\n\\r\\n" in self.buf:
            head, self.buf = self.buf.split(b"\\r\\n\\r\\n", 1)
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            body = sys.argv[1].encode()
            resp = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body
            if path.startswith(b"/slow/"):  # /slow/<seconds>: answer late
                asyncio.get_running_loop().call_later(float(path[6:]), self.send, resp)
            else:
                self.t.write(resp)
    def send(self, resp):
        if not self.t.is_closing(): self.t.write(resp)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[2]))
    await s.serve_forever()
asyncio.run(main())
"""

# The end of a backend script that serves each connection in a thread: the script
# imports socket, sys and threading and defines `handle(conn)`; argv[1] is the port.
SERVE_EACH_IN_A_THREAD = """
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_backend(procs: list[subprocess.Popen[bytes]], name: str) -> int:
    port = free_port()
    procs.append(subprocess.Popen([sys.executable, "-c", BACKEND, name, str(port)]))
    wait_port(port)
    return port


def start_lb(
    procs: list[subprocess.Popen[bytes]], backends: list[int], *extra: str, log: Path
) -> tuple[int, int]:
    port, admin = free_port(), free_port()
    cmd = [str(Path(sys.executable).parent / "spofless"), "lb", "--listen", f"127.0.0.1:{port}"]
    for b in backends:
        cmd += ["--backend", f"127.0.0.1:{b}"]
    cmd += ["--admin", f"127.0.0.1:{admin}", *extra]
    with log.open("wb") as err:
        procs.append(subprocess.Popen(cmd, stderr=err))
    wait_port(port)
    wait_port(admin)
    return port, admin


def start_lb_file(
    procs: list[subprocess.Popen[bytes]], file: Path, port: int, admin: int, *, log: Path
) -> None:
    """`spofless lb FILE --component lb` listening on `port` with its admin API on `admin`."""
    cmd = [str(Path(sys.executable).parent / "spofless"), "lb", str(file), "--component", "lb"]
    with log.open("wb") as err:
        procs.append(subprocess.Popen(cmd, stderr=err))
    wait_port(port)
    wait_port(admin)


def get(
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    *,
    source: str | None = None,
    method: str = "GET",
    timeout: float = 10.0,
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh connection: status, body, headers (lower-case names)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def lb_status(admin: int, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    code, body, _ = get(admin, "/status", headers)
    assert code == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def backend_state(admin: int, port: int) -> dict[str, Any]:
    return lb_status(admin)["backends"][f"127.0.0.1:{port}"]  # type: ignore[no-any-return]


class Load:
    """Keep-alive GET clients in threads, bounded in time; counts errors and latencies."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.bodies: dict[bytes, int] = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    self.errors.append(f"status {resp.status}")
                self.bodies[body] = self.bodies.get(body, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.latencies.append(time.monotonic() - t0)
            time.sleep(0.002)
        conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)
