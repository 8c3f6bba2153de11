"""Client-seen outage of the floating VIP: spofless vs keepalived, in one run, in the lab.

    sudo .venv/bin/python benchmarks/vip_vs_keepalived/run.py [--reps 5]

Builds the lab of tests/integration/vip_fixtures.py (2 load balancers, 3 apps with an
etcd member each, 1 client sending GET to the VIP every 10 ms), then for each contender
and each fault ("kill the holder's load balancer", "cut the holder's host off") runs
`--reps` repetitions and prints the median and max outage and the ratio to spofless.
keepalived runs with a vrrp_script that checks the local load balancer (as a
keepalived user would), nopreempt, at advert_int 1 s and at the smallest it accepts
(VRRPv3, 0.01 s... tried downwards until it starts). Installs keepalived if missing.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.vip_fixtures import (  # noqa: E402
    LB_PORT,
    VIP,
    Client,
    VipLab,
    holders,
    outage_of,
    wait_for,
)

KEEPALIVED_CONF = """
global_defs {
    enable_script_security
    script_user root
    vrrp_version %(version)d
}
vrrp_script chk_lb {
    script "/usr/bin/curl -s -o /dev/null -m %(check_timeout)s http://%(host)s:%(port)d/"
    interval %(check_interval)s
    timeout 1
    fall 1
    rise 1
}
vrrp_instance VI_1 {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority %(priority)d
    advert_int %(advert)s
    virtual_ipaddress {
        %(vip)s/16 dev eth0
    }
    track_script {
        chk_lb
    }
}
"""


def ensure_keepalived() -> str:
    path = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not Path(path).exists():
        print("installing keepalived (apt-get)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "keepalived"], check=True)
        subprocess.run(["systemctl", "stop", "keepalived"], capture_output=True)
    return path


class Keepalived:
    """keepalived in both lb namespaces, as a drop-in for the spofless agents."""

    def __init__(self, v: VipLab, binary: str, advert: str) -> None:
        self.v, self.binary, self.advert = v, binary, advert
        self.version = 2 if float(advert) >= 1 and float(advert).is_integer() else 3
        check_interval = "1" if self.version == 2 else "0.1"
        for i in (0, 1):
            host = f"lb{i + 1}"
            conf = v.tmp / f"keepalived{i}-{advert}.conf"
            conf.write_text(
                KEEPALIVED_CONF
                % {
                    "version": self.version,
                    "check_timeout": "0.5" if self.version == 2 else "0.1",
                    "check_interval": check_interval,
                    "host": v.lab.plan.host(host).address,
                    "port": LB_PORT,
                    "priority": 100 - i,
                    "advert": advert,
                    "vip": VIP,
                }
            )
            self.start(i)

    def start(self, i: int) -> None:
        conf = self.v.tmp / f"keepalived{i}-{self.advert}.conf"
        run = self.v.tmp / f"ka{i}"
        run.mkdir(exist_ok=True)
        argv = [self.binary, "-n", "-l", "-D", "-f", str(conf), "-p", str(run / "k.pid"),
                "-r", str(run / "v.pid"), "-c", str(run / "c.pid")]  # fmt: skip
        self.v.spawn(f"vip{i}", f"lb{i + 1}", argv)

    def stop(self) -> None:
        for i in (0, 1):
            self.v.kill(f"vip{i}", 15)
            self.v.procs[f"vip{i}"].wait(timeout=10)


def measure(v: VipLab, fault: str, restart_vip: Callable[[int], None]) -> float:
    """One repetition: steady state, client, fault at 1 s; the client-seen outage."""
    v.lab.restore()
    for i in (0, 1):
        if v.procs[f"lb{i}"].poll() is not None:
            v.start_lb(i)
        if v.procs[f"vip{i}"].poll() is not None:
            restart_vip(i)
    h = v.wait_stable(30, hold=1.5)
    client = Client(v.lab, 4.0, timeout=0.1)
    time.sleep(1.0)
    at = time.monotonic()
    if fault == "kill lb":
        v.kill(f"lb{h}")
    else:
        v.lab.cut(f"host:lb{h + 1}")
    outage = outage_of(client.samples(), at)
    v.lab.restore()
    return outage.longest if outage.recovered else float("inf")


def run(reps: int) -> None:
    binary = ensure_keepalived()
    results: dict[tuple[str, str], list[float]] = {}
    for contender in ("spofless", "keepalived advert_int 1", "keepalived advert_int 0.1"):
        tmp = Path(tempfile.mkdtemp(prefix="vipbench-"))
        v = VipLab(tmp, secrets.token_hex(3), start_vips=contender == "spofless")
        try:
            if contender == "spofless":
                restart = v.start_vip
            else:
                ka = Keepalived(v, binary, contender.rsplit(" ", 1)[1])
                restart = ka.start
                wait_for(lambda v=v: len(holders(v.lab)) == 1, 30, "keepalived elects a master")
            for fault in ("kill lb", "cut host"):
                got = [measure(v, fault, restart) for _ in range(reps)]
                results[(contender, fault)] = got
                print(f"{contender:28} {fault:9} " + " ".join(f"{x:.3f}" for x in got), flush=True)
        finally:
            v.close()
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'fault':9} {'contender':28} {'median s':>9} {'max s':>7} {'x spofless':>10}")
    for fault in ("kill lb", "cut host"):
        base = statistics.median(results[("spofless", fault)])
        for contender in ("spofless", "keepalived advert_int 1", "keepalived advert_int 0.1"):
            xs = results[(contender, fault)]
            med = statistics.median(xs)
            print(f"{fault:9} {contender:28} {med:9.3f} {max(xs):7.3f} {med / base:10.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    run(parser.parse_args().reps)
