"""Lab test helpers: skip without root/namespaces, a small lab, a TCP echo server and client.

Each lab gets a random id and a state dir under tmp_path, so tests running at the same
time never share a namespace; every lab and process is removed in a finalizer.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spofless.lab import Lab
from spofless.topology import Topology, load_topology_text

SMALL_LAB = """
name: labtest
regions:
  eu: {zones: [a, b]}
  us: {zones: [a]}
hosts:
  eu1: {zone: eu/a}
  eu2: {zone: eu/a}
  eu3: {zone: eu/b}
  us1: {zone: us/a}
components:
  web: {kind: service, instances: [eu1, eu3, us1], port: 8000}
entry: [web]
lab:
  links:
    zone: {latency_ms: 1}
    region: {latency_ms: 40}
"""

VIP = "10.77.255.200"

# A stack with a floating VIP (tests/integration/test_stack_vip_lab.py, and the VIP
# drill of test_drill_lab.py). Three regions so that no single one is a point of
# failure; hold_time above the default because this machine is shared and loaded
# (an etcd write slower than it costs the holder the address: safely, but an outage;
# see docs/vip.md).
VIP_STACK = f"""\
name: vipstack
regions:
  r1: {{zones: [a]}}
  r2: {{zones: [a]}}
  r3: {{zones: [a]}}
hosts:
  lb1: {{zone: r1/a}}
  lb2: {{zone: r2/a}}
  app1: {{zone: r1/a}}
  app2: {{zone: r2/a}}
  app3: {{zone: r3/a}}
  client: {{zone: r3/a}}
components:
  etcd:
    kind: etcd
    instances: [app1, app2, app3]
    min_up: majority
    port: 2379
    peer_port: 2400
  web:
    kind: service
    instances: [app1, app2, app3]
    port: 8000
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz}}
  lb:
    kind: load_balancer
    instances: [lb1, lb2]
    needs: [web, etcd]
    port: 8080
    routes: [{{to: web}}]
    vip: {{address: {VIP}/16, hold_time: 0.6, takeover_margin: 0.1}}
entry: [lb]
"""

ECHO_SERVER = """
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(10)
    try:
        while data := c.recv(65536):
            c.sendall(data)
    except OSError:
        pass
    c.close()
"""

# Connects, sends 5 pings, prints the median round trip in ms; exit 1 when unreachable.
ECHO_CLIENT = """
import socket, statistics, sys, time
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(float(sys.argv[3]))
    rtts = []
    for _ in range(5):
        t = time.monotonic()
        c.sendall(b"ping")
        got = b""
        while len(got) < 4:
            chunk = c.recv(64)
            if not chunk:
                raise OSError("closed")
            got += chunk
        rtts.append((time.monotonic() - t) * 1000)
except OSError as exc:
    print(f"unreachable: {exc}", flush=True)
    sys.exit(1)
print(statistics.median(rtts), flush=True)
"""


CONTROL = "@control"


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot run lab tests, or None when it can."""
    if sys.platform != "linux":
        return "the lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces); run the lab tests as root"
    probe = f"spfprobe{secrets.token_hex(3)}"
    try:
        proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is missing: run scripts/system-deps.sh"
    if proc.returncode != 0:
        return f"`ip netns add` failed: {proc.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=10)
    return None


def require_lab() -> None:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)


def small_topology(tmp_path: Path, text: str = SMALL_LAB) -> Topology:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return load_topology_text(text, source=str(path))


@pytest.fixture(name="small_lab")
def small_lab_fixture(tmp_path: Path) -> Iterator[tuple[Lab, Topology]]:
    """A lab of SMALL_LAB, always taken down."""
    require_lab()
    topology = small_topology(tmp_path)
    lab = Lab.of(topology, state_dir=tmp_path / "labstate", lab_id=secrets.token_hex(3))
    try:
        Lab.up(topology, lab.state_dir, lab.lab_id)
        yield lab, topology
    finally:
        lab.down()


class EchoServer:
    """A TCP echo server inside a host's namespace; `port` is the one the OS gave it."""

    def __init__(self, lab: Lab, host: str) -> None:
        self.proc = lab.popen(
            host,
            [sys.executable, "-c", ECHO_SERVER],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the server prints its port at once
        if not line.strip().isdigit():
            self.stop()
            raise AssertionError(f"echo server in {host} did not start: {line!r}")
        self.port = int(line)
        self.address = lab.plan.host(host).address

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def echo_rtt_ms(lab: Lab, host: str, server: EchoServer, timeout: float = 3.0) -> float | None:
    """Median round trip from `host` (CONTROL: the control namespace) to the echo server
    in ms; None when unreachable."""
    argv = [sys.executable, "-c", ECHO_CLIENT, server.address, str(server.port), str(timeout)]
    wrapped = lab.control_argv(argv) if host == CONTROL else lab.argv(host, argv)
    proc = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout * 8 + 10)
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip())


def ip_state() -> tuple[str, str]:
    """This machine's own namespaces and links, to compare before and after a lab."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10)
    # Link counters and states of the machine's own interfaces may change; names may not.
    names = "\n".join(sorted(line.split(":")[1].strip() for line in links.stdout.splitlines()))
    return netns.stdout, names
