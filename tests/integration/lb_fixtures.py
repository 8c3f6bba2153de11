"""Real backends and a real `spofless lb` process on 127.0.0.1, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BACKEND = """
import asyncio, sys
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        while b"\\r\\n\\r\\n" in self.buf:
            _, self.buf = self.buf.split(b"\\r\\n\\r\\n", 1)
            body = sys.argv[1].encode()
            head = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
            self.t.write(head + body)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[2]))
    await s.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
