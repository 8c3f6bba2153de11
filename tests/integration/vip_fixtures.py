"""A lab with a floating VIP: 2 load balancers, 3 app hosts (one etcd member each), 1 client.

    lb1 (zone a)  lb2 (zone b)        load balancers + VIP agents
    app1 (a)  app2 (b)  app3 (c)      demo app + etcd member each
    client (c)                        sends GET http://VIP:8080/ every 10 ms

Cutting zone a leaves lb1 with one etcd member of three: "etcd's majority cut
away from the holder" when lb1 holds. Every process is started inside its
host's namespace through `Lab.argv` and stopped by `VipLab.close()`; the lab is
always taken down. `AddressLog` records every add and removal of the VIP on both
lb hosts from `ip monitor` (event driven, timestamped), to prove it was never on
both at once. Used by tests/integration/test_vip_lab.py and the benchmark.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ruamel.yaml import YAML
from waiting import wait_for

from spofless.dcs.etcd_server import EtcdCluster, EtcdMember, etcd_command
from spofless.lab import Lab
from spofless.security import etcd_client_tls, etcd_member_tls, init_secrets
from spofless.topology import Topology, load_topology, load_topology_text

VIP = "10.77.255.200"
LB_PORT = 8080

TOPOLOGY = """
name: viplab
regions:
  r: {zones: [a, b, c]}
hosts:
  lb1: {zone: r/a}
  lb2: {zone: r/b}
  app1: {zone: r/a}
  app2: {zone: r/b}
  app3: {zone: r/c}
  client: {zone: r/c}
components:
  etcd: {kind: etcd, instances: [app1, app2, app3], port: 2379, peer_port: 2400}
  app: {kind: service, instances: [app1, app2, app3], port: 8000}
  lb:
    kind: load_balancer
    instances: [lb1, lb2]
    port: 8080
    routes: [{to: app}]
    vip: {address: %(vip)s/16%(extra)s}
entry: [lb]
lab:
  links:
    zone: {latency_ms: 0.5}
    region: {latency_ms: 1}
"""

# GET the VIP every `interval` for `duration` s with a fresh connection each time (so that
# every request shows where the VIP is now); print one line per request: monotonic
# time, 1 or 0. Connect and read bounded by `timeout`.
CLIENT = r"""
import socket, sys, time
ip, port, duration, interval, timeout = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
req = f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode()
end = time.monotonic() + duration
out = sys.stdout
while (t := time.monotonic()) < end:
    ok = 0
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(req)
            ok = int(s.recv(12).startswith(b"HTTP/1.1 200"))
    except OSError:
        pass
    out.write(f"{t:.6f} {ok}\n")
    out.flush()
    time.sleep(max(0.0, t + interval - time.monotonic()))
"""


def spofless_argv(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "spofless"), *args]


@dataclass
class Outage:
    """What the client saw around a fault: the longest run of failures after `since`."""

    longest: float  # s between the last success before and the first success after
    failures: int
    recovered: bool  # a success after the last failure


def outage_of(samples: list[tuple[float, bool]], since: float) -> Outage:
    last_ok = None
    longest = 0.0
    failures = 0
    in_gap = False
    for t, ok in samples:
        if t < since - 1.0:
            if ok:
                last_ok = t
            continue
        if ok:
            if in_gap and last_ok is not None:
                longest = max(longest, t - last_ok)
            in_gap = False
            last_ok = t
        else:
            failures += 1
            in_gap = True
    # Recovered: most of the last ten requests succeed (a loaded machine may time one out).
    tail = [ok for _, ok in samples[-10:]]
    return Outage(longest, failures, recovered=len(tail) == 10 and sum(tail) >= 8)


class Client:
    """The client loop in the client host; `samples()` once it has finished."""

    def __init__(self, lab: Lab, duration: float, interval: float = 0.01, timeout: float = 0.25):
        argv = [sys.executable, "-c", CLIENT, VIP, str(LB_PORT), str(duration), str(interval)]
        self.proc = lab.popen("client", [*argv, str(timeout)], stdout=subprocess.PIPE, text=True)
        self.duration = duration

    def samples(self) -> list[tuple[float, bool]]:
        out, _ = self.proc.communicate(timeout=self.duration + 30)
        return [(float(t), ok == "1") for t, ok in (line.split() for line in out.splitlines())]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


class AddressLog:
    """`ip monitor address` in each lb namespace: when the VIP was added or removed."""

    LINE = re.compile(r"^\[([^\]]+)\]\s*(Deleted )?\d+:\s+(\S+)\s+inet ([0-9.]+)/")

    def __init__(self, lab: Lab, hosts: list[str]) -> None:
        self.events: list[tuple[float, str, bool]] = []  # (time.time(), host, added)
        self._lock = threading.Lock()
        self.procs = []
        for host in hosts:
            netns = lab.plan.host(host).netns
            proc = subprocess.Popen(
                ["ip", "-n", netns, "-ts", "-o", "monitor", "address"],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(proc, host), daemon=True).start()
        time.sleep(0.2)  # the monitors are listening

    def _read(self, proc: subprocess.Popen[str], host: str) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = self.LINE.match(line)
            if m and m.group(4) == VIP:
                stamp = datetime.fromisoformat(m.group(1)).timestamp()
                with self._lock:
                    self.events.append((stamp, host, m.group(2) is None))

    def overlaps(self) -> list[tuple[float, float]]:
        """Intervals (start, length) during which the VIP was on two hosts at once."""
        with self._lock:
            events = sorted(self.events)
        holders: set[str] = set()
        out = []
        start = None
        for t, host, added in events:
            (holders.add if added else holders.discard)(host)
            if len(holders) > 1 and start is None:
                start = t
            elif len(holders) <= 1 and start is not None:
                out.append((start, t - start))
                start = None
        if start is not None:
            out.append((start, time.time() - start))
        return out

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


def holders(lab: Lab, hosts: tuple[str, ...] = ("lb1", "lb2")) -> list[str]:
    """The lb hosts that have the VIP now."""
    out = []
    for host in hosts:
        netns = lab.plan.host(host).netns
        proc = subprocess.run(
            ["ip", "-n", netns, "-o", "-4", "addr", "show"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if f" {VIP}/" in proc.stdout:
            out.append(host)
    return out


class VipLab:
    """The lab and everything running in it. `close()` stops all and takes the lab down."""

    def __init__(
        self, tmp: Path, lab_id: str, vip_extra: str = "", *, start_vips: bool = True
    ) -> None:
        self.start_vips = start_vips
        self.tmp = tmp
        text = TOPOLOGY % {"vip": VIP, "extra": vip_extra}
        path = tmp / "viplab.yaml"
        path.write_text(text)
        self.topology: Topology = load_topology_text(text, source=str(path))
        self.lab = Lab.of(self.topology, state_dir=tmp / "labstate", lab_id=lab_id)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.shm = Path(tempfile.mkdtemp(prefix="spofless-viplab-", dir="/dev/shm"))
        self.address_log: AddressLog | None = None
        Lab.up(self.topology, self.lab.state_dir, self.lab.lab_id)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- start -----------------------------------------------------------------------

    def _start(self) -> None:
        lab_topo = self.lab.topology(self.topology)
        self.file = self.tmp / "viplab-lab.yaml"
        with self.file.open("w") as f:
            YAML(typ="safe").dump(json.loads(json.dumps(dict(lab_topo.data))), f)
        addr = {h: self.lab.plan.host(h).address for h in self.lab.plan.hosts}
        apps = ("app1", "app2", "app3")
        # etcd as `up` runs it: TLS with the topology's certificates (for the lab's
        # addresses), which the VIP agents present.
        secured = load_topology(self.file)
        init_secrets(secured)
        self.client_tls = etcd_client_tls(secured)
        self.cluster = EtcdCluster(
            members=tuple(
                EtcdMember(
                    name=f"e{i}",
                    # tmpfs: the lab shares a loaded machine; fsync stalls are not the
                    # subject here (choose hold_time above your etcd's write latency).
                    data_dir=self.shm / f"etcd{i}",
                    client_url=f"https://{addr[h]}:{2379 + i}",
                    peer_url=f"https://{addr[h]}:{2400 + i}",
                    tls=etcd_member_tls(secured, h),
                )
                for i, h in enumerate(apps)
            ),
            watch_progress_interval_s=0.5,
        )
        for i, h in enumerate(apps):
            self.spawn(f"etcd{i}", h, etcd_command(self.cluster, f"e{i}"))
            self.spawn(
                f"app{i}", h, [sys.executable, "-m", "spofless.demo.app", "--port", str(8000 + i),
                               "--host", addr[h], "--data", str(self.tmp / f"app{i}.jsonl"),
                               "--name", h],
            )  # fmt: skip
        self.address_log = AddressLog(self.lab, ["lb1", "lb2"])
        for i in (0, 1):
            self.start_lb(i)
        wait_for("etcd healthy", self._etcd_healthy, 30, step=0.02)
        if self.start_vips:
            for i in (0, 1):
                self.start_vip(i)
            self.wait_stable(30)

    def _etcd_healthy(self) -> bool:
        for i, m in enumerate(self.cluster.members):
            assert self.client_tls is not None
            tls = self.client_tls
            argv = [
                sys.executable,
                "-c",
                HEALTH,
                m.client_url,
                *map(str, (tls.ca, tls.cert, tls.key)),
            ]
            wrapped = self.lab.argv(f"app{i + 1}", argv)
            if subprocess.run(wrapped, capture_output=True, timeout=10).returncode != 0:
                return False
        return True

    def spawn(self, name: str, host: str, argv: list[str]) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = self.lab.popen(host, argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_lb(self, i: int) -> None:
        argv = spofless_argv("lb", str(self.file), "--component", "lb", "--instance", str(i))
        self.spawn(f"lb{i}", f"lb{i + 1}", argv)

    def start_vip(self, i: int) -> None:
        argv = spofless_argv("vip", str(self.file), "--component", "lb", "--instance", str(i))
        self.spawn(f"vip{i}", f"lb{i + 1}", argv)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            if sig == signal.SIGKILL:
                proc.wait(timeout=10)

    def wait_stable(self, timeout: float = 20.0, hold: float = 1.0) -> int:
        """Wait until one instance has held the VIP alone for `hold` s; return its index."""
        start = time.monotonic()
        since, last = time.monotonic(), None
        while time.monotonic() - start < timeout:
            now = holders(self.lab)
            key = now[0] if len(now) == 1 else None
            if key != last:
                since, last = time.monotonic(), key
            elif key is not None and time.monotonic() - since >= hold:
                return int(key[-1]) - 1
            time.sleep(0.05)
        raise AssertionError(f"no stable VIP holder within {timeout:g}s (holders: {now})")

    def holder(self) -> int:
        """The index (0, 1) of the one lb instance holding the VIP; fails unless exactly one."""
        now = holders(self.lab)
        assert len(now) == 1, f"holders: {now}"
        return int(now[0][-1]) - 1

    def overlaps(self) -> list[tuple[float, float]]:
        assert self.address_log is not None
        return self.address_log.overlaps()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self.address_log is not None:
            self.address_log.close()
        self.lab.down()
        shutil.rmtree(self.shm, ignore_errors=True)


HEALTH = """
import sys
from spofless.dcs import EtcdTls
from spofless.dcs.etcd_server import member_healthy
tls = EtcdTls(ca=sys.argv[2], cert=sys.argv[3], key=sys.argv[4])
sys.exit(0 if member_healthy(sys.argv[1], tls=tls) else 1)
"""
