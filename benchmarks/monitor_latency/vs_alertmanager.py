"""Benchmark: a frozen etcd member to the webhook, spofless monitor vs Prometheus +
Alertmanager.

The same `spofless up` stack as run.py (3 etcd members, 2 web instances, 2 monitors),
and beside it Prometheus (Debian 12's 2.42) scraping every etcd member's /metrics with
the common settings of Debian's shipped configuration (scrape and evaluation every
15 s; Prometheus's own defaults are 1 min) and a rule `up{job="etcd"} == 0`, sending to
Alertmanager (Debian's 0.25) with its defaults (group_wait 30 s). Both deliver to
webhooks served here. An etcd member is frozen with SIGSTOP (a kill -9 is no test for
Prometheus here: the supervisor restarts the member within about a second, between two
scrapes, and Prometheus never sees it: tried, no alert in 400 s) until both alerts
came, then thawed; the time from the SIGSTOP to each webhook request is recorded.
Run from the repository root (needs the `prometheus` and `prometheus-alertmanager`
packages): .venv/bin/python benchmarks/monitor_latency/vs_alertmanager.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from run import TOPOLOGY, Sink, cli, port_block, serve, wait

PROMETHEUS = """\
global: {{scrape_interval: 15s, evaluation_interval: 15s}}
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am}"]}}]}}]
rule_files: ["{rules}"]
scrape_configs:
  - job_name: etcd
    static_configs: [{{targets: [{targets}]}}]
"""
RULES = """\
groups:
  - name: bench
    rules:
      - alert: EtcdMemberDown
        expr: up{job="etcd"} == 0
"""
ALERTMANAGER = """\
route: {{receiver: hook}}
receivers:
  - name: hook
    webhook_configs: [{{url: "{url}"}}]
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    # Alertmanager sends a group's later alerts group_interval (5 min) after its last
    # notification: more kills take minutes each. One kill measures group_wait.
    parser.add_argument("--kills", type=int, default=1, choices=[1, 2, 3])
    parser.add_argument("--gap", type=float, default=30.0)
    opts = parser.parse_args()
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        print("needs Debian's prometheus and prometheus-alertmanager packages")
        return 2
    spofless_sink, am_sink = Sink(), Sink()
    s1, url = serve(spofless_sink)
    s2, am_url = serve(am_sink)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ports: dict[str, int] = {}
        taken: list[int] = []
        for key, n in (("web", 2), ("etcd", 3), ("peer", 3), ("monitor", 2), ("prom", 2)):
            ports[key] = port_block(n, taken)
            taken += range(ports[key], ports[key] + n)
        path = Path(tmp) / "latency.yaml"
        # etcd over plain http, which Prometheus scrapes without the stack's client
        # certificate (with TLS on, every scrape failed and `up == 0` fired from the start).
        text = TOPOLOGY.format(url=url, **{k: ports[k] for k in TOPOLOGY_KEYS})
        path.write_text(text.replace("name: latency\n", "name: latency\nsecurity: {tls: false}\n"))
        state = ["--state-dir", str(Path(tmp) / "state")]
        targets = ", ".join(f'"127.0.0.1:{ports["etcd"] + i}"' for i in range(3))
        (Path(tmp) / "rules.yml").write_text(RULES)
        (Path(tmp) / "prometheus.yml").write_text(
            PROMETHEUS.format(am=ports["prom"] + 1, rules=Path(tmp) / "rules.yml", targets=targets)
        )
        (Path(tmp) / "am.yml").write_text(ALERTMANAGER.format(url=am_url))
        up = cli("up", str(path), *state, "--detach", "--wait", "--timeout", "90")
        if up.returncode != 0:
            print(up.stdout, up.stderr)
            return 1
        try:
            log = (Path(tmp) / "tools.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        "prometheus-alertmanager",
                        f"--config.file={Path(tmp) / 'am.yml'}",
                        f"--storage.path={Path(tmp) / 'am'}",
                        f"--web.listen-address=127.0.0.1:{ports['prom'] + 1}",
                        "--cluster.listen-address=",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            procs.append(
                subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={Path(tmp) / 'prometheus.yml'}",
                        f"--storage.tsdb.path={Path(tmp) / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{ports['prom']}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            time.sleep(40.0)  # two scrapes and evaluations: every target known up
            if any(proc.poll() is not None for proc in procs):  # a port taken meanwhile
                log.flush()
                print((Path(tmp) / "tools.log").read_text()[-2000:])
                return 1
            if am_sink.alerts():
                print("Alertmanager alerted before any fault: Prometheus cannot scrape etcd")
                return 1
            rows = []
            for victim in ("etcd/0", "etcd/1", "etcd/2")[: opts.kills]:
                doc = json.loads(cli("status", str(path), *state, "--json").stdout)
                (inst,) = [i for i in doc["instances"] if i["name"] == victim]
                before = (len(spofless_sink.alerts()), len(am_sink.alerts()))
                killed = time.time()
                os.kill(inst["pid"], signal.SIGSTOP)

                def first(sink: Sink, skip: int) -> float | None:
                    got = [t for t, a in sink.alerts()[skip:] if a["status"] == "firing"]
                    return got[0] if got else None

                try:
                    ours = wait("spofless", lambda b=before[0]: first(spofless_sink, b), 30)
                    theirs = wait("alertmanager", lambda b=before[1]: first(am_sink, b), 400)
                finally:
                    os.kill(inst["pid"], signal.SIGCONT)
                ours, theirs = ours - killed, theirs - killed
                rows.append((victim, ours, theirs))
                print(
                    f"SIGSTOP {victim}: spofless {ours:.3f}s, Prometheus + Alertmanager "
                    f"{theirs:.1f}s ({theirs / ours:.0f}x)",
                    flush=True,
                )
                time.sleep(opts.gap)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait(timeout=10)
            cli("down", str(path), *state)
            s1.shutdown()
            s2.shutdown()
    ours = statistics.median(r[1] for r in rows)
    theirs = statistics.median(r[2] for r in rows)
    print(f"median: spofless {ours:.3f}s, Prometheus + Alertmanager {theirs:.1f}s")
    return 0


TOPOLOGY_KEYS = ("web", "etcd", "peer", "monitor")

if __name__ == "__main__":
    sys.exit(main())
