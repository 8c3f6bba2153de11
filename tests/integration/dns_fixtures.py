"""Fixtures for the DNS tests: real backend processes standing in for load balancers,
and `spofless dns` run as a process. Everything started here is killed by PID at the end.
The generators are the bodies of fixtures: `yield from backend_spawner()`."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from free_ports import free_port

# An HTTP server that answers 200 to anything: a load balancer's health endpoint.
_BACKEND = r"""
import asyncio, sys

async def handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except Exception:
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def _read_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> re.Match[str] | None:
    """The first line of the process's stdout matching `pattern`, within `timeout` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            return None  # the process ended
        match = re.search(pattern, line)
        if match:
            return match
    return None


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class Backend:
    """One backend process listening on host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> bool:
        """Start it; False when it could not listen (e.g. the port is taken)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BACKEND, self.host, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if _read_line(self.proc, "ready", 15.0) is None:
            _stop(self.proc)
            return False
        return True

    def kill(self) -> None:
        """kill -9, as a crashed load balancer."""
        if self.proc is not None:
            _stop(self.proc)


Spawn = Callable[[list[str]], tuple[int, list[Backend]]]


def backend_spawner() -> Iterator[Spawn]:
    """`spawn(hosts)` starts backend i on hosts[i], port + i (where topology instance i
    listens), and returns the base port and the backends."""
    started: list[Backend] = []

    def spawn(hosts: list[str]) -> tuple[int, list[Backend]]:
        for _ in range(10):
            port = free_port()
            group = [Backend(host, port + i) for i, host in enumerate(hosts)]
            ok = True
            for backend in group:
                started.append(backend)
                if not backend.start():
                    ok = False
                    break
            if ok:
                return port, group
            for backend in group:
                backend.kill()
        raise RuntimeError(f"could not start backends on {hosts}")

    try:
        yield spawn
    finally:
        for backend in started:
            backend.kill()


def lb_topology(
    lb_hosts: list[str], lb_port: int, dns_port: int = 5300, dns_extra: str = ""
) -> str:
    """A topology with one DNS instance answering `www` with one load balancer per host."""
    hosts = "\n".join(f"  h{i}: {{address: {a}}}" for i, a in enumerate(lb_hosts))
    names = ", ".join(f"h{i}" for i in range(len(lb_hosts)))
    return f"""\
name: dnstest
hosts:
{hosts}
components:
  dns:
    kind: dns
    instances: 1
    port: {dns_port}
    zone: shop.example.
    records: {{www: lb}}
{dns_extra}
  lb:
    kind: load_balancer
    instances: [{names}]
    port: {lb_port}
    health: {{type: http, interval: 0.2, timeout: 0.5, fall: 2, rise: 2}}
entry: [dns]
"""


class DnsProcess:
    """`spofless dns` running as a process, its log in a file."""

    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def output(self) -> str:
        return self.log.read_text()


def dns_process_starter(tmp_path: Path) -> Iterator[Callable[[str], DnsProcess]]:
    """`start(topology_text)` runs `spofless dns FILE --component dns --instance 0 --port 0`."""
    procs: list[subprocess.Popen[str]] = []

    def start(text: str) -> DnsProcess:
        path = tmp_path / f"topology-{len(procs)}.yaml"
        path.write_text(text)
        log = path.with_suffix(".log")
        exe = Path(sys.executable).with_name("spofless")
        argv = [str(exe), "dns", str(path), "--component", "dns", "--instance", "0"]
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*argv, "--port", "0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        procs.append(proc)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and proc.poll() is None:
            match = re.search(r"serving zone \S+ on [^ ]+:(\d+) ", log.read_text())
            if match:
                return DnsProcess(proc, int(match.group(1)), log)
            time.sleep(0.05)
        raise RuntimeError(f"spofless dns did not start:\n{log.read_text()}")

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc, signal.SIGTERM)
