"""Queries per second of `spofless dns` against NSD serving the same zone, measured by dnsperf.

Usage (from the repository root, after `make .venv/.installed`):

    .venv/bin/python benchmarks/dns_qps/run.py [--seconds 10] [--runs 3]

Installs dnsperf and nsd from the distribution (apt-get) when missing. Both
servers run on 127.0.0.1 on free ports, one process each (NSD with one
server process), and are stopped at the end. Runs alternate between the two;
the medians and their ratio are printed as a line for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

ZONE = "bench.example."
ADDRESSES = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
# The mix a health-checked zone sees: mostly the service name, some of the rest.
QUERIES = [
    ("www", "A"),
    ("www", "A"),
    ("www", "A"),
    ("www", "A"),
    ("www", "AAAA"),  # NODATA: the load balancers have IPv4 addresses only
    ("@", "SOA"),
    ("@", "NS"),
    ("nope", "A"),  # NXDOMAIN
]


def ensure_packages() -> None:
    missing = [p for p, exe in (("dnsperf", "dnsperf"), ("nsd", "nsd")) if not _which(exe)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} (apt-get)", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )
    if shutil.which("systemctl"):  # spofless runs its own nsd: stop the packaged one
        subprocess.run([*sudo, "systemctl", "stop", "nsd"], check=False, timeout=60)


def _which(exe: str) -> str | None:
    return shutil.which(exe) or shutil.which(exe, path="/usr/sbin:/sbin")


def free_port() -> int:
    # The TCP and UDP port must both be free; the servers bind both.
    for _ in range(50):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def topology(port: int, lb_port: int) -> str:
    hosts = "\n".join(f"  lb{i}: {{address: 127.0.0.{i + 2}}}" for i in range(len(ADDRESSES)))
    return f"""\
name: dnsbench
hosts:
{hosts}
components:
  dns:
    kind: dns
    instances: 1
    port: {port}
    zone: {ZONE}
    ttl: 5
    records: {{www: {{component: lb, addresses: [{", ".join(ADDRESSES)}]}}}}
    rate_limit: {{responses_per_second: 0}}   # dnsperf is one source: measure, do not limit
  lb: {{kind: load_balancer, instances: [lb0, lb1, lb2], port: {lb_port}}}
entry: [dns]
"""


def zone_file() -> str:
    lines = [
        f"$ORIGIN {ZONE}",
        "$TTL 3600",
        f"@ IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 5",
        f"@ IN NS ns1.{ZONE}",
        "ns1 IN A 127.0.0.1",
    ]
    lines += [f"www 5 IN A {a}" for a in ADDRESSES]
    return "\n".join(lines) + "\n"


def nsd_conf(workdir: Path, port: int) -> str:
    return f"""\
server:
    ip-address: 127.0.0.1
    port: {port}
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{workdir}"
    pidfile: "{workdir}/nsd.pid"
    database: ""
    zonelistfile: "{workdir}/zone.list"
    xfrdfile: "{workdir}/xfrd.state"
    xfrdir: "{workdir}"
    logfile: "{workdir}/nsd.log"
    hide-version: yes
    rrl-ratelimit: 0          # NSD's response rate limiting is on by default; off, as ours
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: "{workdir}/bench.zone"
"""


def wait_answering(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    query = dns.message.make_query(f"www.{ZONE}", "A")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        except (dns.exception.Timeout, OSError):
            time.sleep(0.1)
            continue
        got = {rd.to_text() for rrset in reply.answer for rd in rrset}
        if reply.rcode() == dns.rcode.NOERROR and got == set(ADDRESSES):
            return
        raise RuntimeError(f"{what} answered {reply}")
    raise RuntimeError(f"{what} did not answer within 30 s")


def dnsperf(port: int, queries: Path, seconds: int) -> float:
    # 4 client sockets, up to 200 queries in flight, 2 s before a query counts as lost.
    load = ["-d", str(queries), "-l", str(seconds), "-c", "4", "-q", "200", "-t", "2"]
    out = subprocess.run(
        [_which("dnsperf") or "dnsperf", "-s", "127.0.0.1", "-p", str(port), *load],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    match = re.search(r"Queries per second:\s+([\d.]+)", out.stdout)
    lost = re.search(r"Queries lost:\s+(\d+) \(([\d.]+)%\)", out.stdout)
    if match is None:
        raise RuntimeError(f"dnsperf printed no rate:\n{out.stdout}\n{out.stderr}")
    if lost is not None and float(lost.group(2)) > 1.0:
        print(f"  note: {lost.group(1)} queries lost ({lost.group(2)}%)", file=sys.stderr)
    return float(match.group(1))


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each dnsperf run")
    parser.add_argument("--runs", type=int, default=3, help="runs per server")
    args = parser.parse_args()
    ensure_packages()
    spofless = Path(sys.executable).with_name("spofless")
    nsd = _which("nsd")
    assert nsd is not None

    with tempfile.TemporaryDirectory(prefix="dns-qps-") as tmp:
        work = Path(tmp)
        queries = work / "queries.txt"
        queries.write_text(
            "".join(f"{ZONE if n == '@' else f'{n}.{ZONE}'} {t}\n" for n, t in QUERIES)
        )
        (work / "topology.yaml").write_text(topology(free_port(), free_port()))
        (work / "bench.zone").write_text(zone_file())
        nsd_port = free_port()
        (work / "nsd.conf").write_text(nsd_conf(work, nsd_port))

        procs: list[subprocess.Popen[bytes]] = []
        try:
            sp_port = free_port()
            sp = subprocess.Popen(
                [str(spofless), "dns", str(work / "topology.yaml"), "--port", str(sp_port)],
                stdout=subprocess.DEVNULL,
                stderr=(work / "spofless.log").open("wb"),
            )
            procs.append(sp)
            ns = subprocess.Popen(
                [nsd, "-d", "-c", str(work / "nsd.conf")],
                stdout=subprocess.DEVNULL,
                stderr=(work / "nsd.stderr").open("wb"),
            )
            procs.append(ns)
            wait_answering(sp_port, sp, "spofless dns")
            wait_answering(nsd_port, ns, "nsd")

            results: dict[str, list[float]] = {"spofless": [], "nsd": []}
            for run in range(args.runs):
                for name, port in (("spofless", sp_port), ("nsd", nsd_port)):
                    qps = dnsperf(port, queries, args.seconds)
                    results[name].append(qps)
                    print(f"run {run + 1}: {name:8s} {qps:10.0f} q/s", file=sys.stderr)
        finally:
            for proc in procs:
                stop(proc)

    sp_med = statistics.median(results["spofless"])
    ns_med = statistics.median(results["nsd"])
    version = subprocess.run([nsd, "-v"], capture_output=True, text=True, check=False)
    nsd_version = (version.stderr or version.stdout).splitlines()[0].strip()
    print(
        f"spofless dns {sp_med:.0f} q/s (median of {args.runs} x {args.seconds} s), "
        f"{nsd_version} {ns_med:.0f} q/s: ratio {sp_med / ns_med:.2f}"
    )
    print(
        "runs: spofless "
        + ", ".join(f"{q:.0f}" for q in results["spofless"])
        + "; nsd "
        + ", ".join(f"{q:.0f}" for q in results["nsd"])
    )


if __name__ == "__main__":
    main()
