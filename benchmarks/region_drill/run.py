"""Region drill, standby-cluster design: cut the primary region under SQL traffic, promote
the standby region with `spofless pg promote-region --force`, heal, fail back. In the lab.

Run as root from the repository root:

    .venv/bin/python benchmarks/region_drill/run.py [--latency 30] [--cut-for 15]

Two regions 30 ms apart one way (netem), each with its own PostgreSQL cluster of two
members and its own one-member etcd: `db` in us (the primary cluster) and `db_eu` in eu
(`standby_of: db`, asynchronous streaming across regions), and an application host in
each region running the drill library's SQL writer (an insert every 10-20 ms, over a
multi-host conninfo of all four members, its own region's first, read-write).

1. Region us is cut off (`lab fault cut region:us`): a partition, its hosts still run.
2. An operator in eu runs `promote-region --region eu`: refused (us cannot be reached
   to be fenced), then with `--force`.
3. After `--cut-for` seconds the cut is healed: us's old primary learns of eu's newer
   epoch, is rewound (pg_rewind) and streams from eu.
4. Failback: `promote-region --region us`, planned (fenced, caught up, no lost write).

Figures: each writer's outage (longest gap between acknowledgements) around the cut and
around the failback; the time from the cut until eu acknowledges a write; the
acknowledged writes missing from the final primary (the RPO), split into those us
acknowledged before the cut (the replication lag: RPO in writes and seconds) and those
the isolated us region kept acknowledging after it (a forced promotion does not fence
it; lost at the rejoin).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIENT = str(HERE.parent / "pg_regions" / "client.py")

# The helpers of the one-cluster benchmark (its CLI runner, status, waits, conninfo).
_spec = importlib.util.spec_from_file_location("pg_regions_run", HERE.parent / "pg_regions/run.py")
assert _spec is not None and _spec.loader is not None
pgr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pgr)
cli, status, wait, conninfo = pgr.cli, pgr.status, pgr.wait, pgr.conninfo
SPOFLESS = pgr.SPOFLESS

US_PORT, EU_PORT = 5432, 6432  # an acknowledgement's port says which cluster gave it
US_WRITER_IDS, EU_WRITER_IDS = 1, 10_000_000

TOPOLOGY = """\
name: regiondrill
security: {{tls: false}}
regions:
  us: {{zones: [a]}}
  eu: {{zones: [a]}}
hosts:
  us1: {{zone: us/a}}
  us2: {{zone: us/a}}
  eu1: {{zone: eu/a}}
  eu2: {{zone: eu/a}}
  appus: {{zone: us/a}}
  appeu: {{zone: eu/a}}
lab:
  links:
    zone: {{latency_ms: 0}}
    region: {{latency_ms: {latency}}}
components:
  etcd_us: {{kind: etcd, instances: [us1], port: 2379, peer_port: 2390}}
  etcd_eu: {{kind: etcd, instances: [eu1], port: 2479, peer_port: 2490}}
  db:
    kind: postgres
    instances: [us1, us2]
    needs: [etcd_us]
    port: {us_port}
    api_port: 8008
  db_eu:
    kind: postgres
    instances: [eu1, eu2]
    needs: [etcd_eu]
    standby_of: db
    port: {eu_port}
    api_port: 8108
  app:
    kind: service
    instances: [appus, appeu]
    needs: [db, db_eu]
    port: 8000
entry: [app]
"""


class Drill:
    def __init__(self, base: Path, latency: float) -> None:
        self.base = base
        self.file = base / "regiondrill.yaml"
        self.file.write_text(TOPOLOGY.format(latency=latency, us_port=US_PORT, eu_port=EU_PORT))
        self.state = base / "state"
        self.lab_file = self.state / "lab-topology.yaml"  # hosts at their lab addresses
        os.environ["SPOFLESS_LAB_STATE_DIR"] = str(base / "labstate")
        self.stop_file = base / "stop-writers"
        self._members: dict[str, str] = {}

    def in_host(
        self, host: str, *argv: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return cli("lab", "exec", str(self.file), host, "--", *argv, timeout=timeout)

    def client(self, host: str, *args: str) -> Any:
        out = self.in_host(host, sys.executable, CLIENT, *args)
        if out.returncode != 0:
            raise RuntimeError(f"client on {host}: {out.stderr[-2000:]}")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def members(self) -> dict[str, str]:
        """host -> ip:port of each PostgreSQL member, read once from `status`."""
        if not self._members:
            self._members = {
                i["host"]: i["address"]
                for i in status(self.file, self.state)
                if i["component"] in ("db", "db_eu")
            }
        return self._members

    def dsn(self, order: list[str]) -> str:
        db = self.members()
        return conninfo(self.file, [db[h] for h in order])

    def one(self, host: str) -> str:
        return self.dsn([host]).replace("target_session_attrs=read-write", "")

    def rw(self, host: str) -> bool:
        out = self.in_host(
            "appus" if host.startswith("us") else "appeu",
            sys.executable, "-c",
            "import sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True); "
            "print(c.execute('select not pg_is_in_recovery()').fetchone()[0])",
            self.one(host),
        )  # fmt: skip
        return out.returncode == 0 and out.stdout.strip() == "True"

    def streaming(self, hosts: list[str]) -> bool:
        try:
            return all(
                self.client("appus" if h.startswith("us") else "appeu", "--streaming", self.one(h))
                for h in hosts
            )
        except RuntimeError:
            return False

    def promote(self, region: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], float]:
        start = time.time()
        out = self.in_host(
            f"app{region}", SPOFLESS, "pg", "promote-region", str(self.lab_file),
            "--region", region, *flags, timeout=180,
        )  # fmt: skip
        return out, time.time() - start


def gap_within(acks: list[list[float]], start: float, end: float) -> float:
    """The longest time without an acknowledgement between `start` and `end` (from the
    last one before `start`, to the first one after `end` when none came in between)."""
    times = [a[2] for a in acks]
    inside = [x for x in times if start <= x <= end]
    before = [x for x in times if x < start][-1:]
    after = [x for x in times if x > end][:1]
    points = before + inside + (after if not inside else [])
    if len(points) < 2:
        return float("nan")
    gaps = [b - a for a, b in itertools.pairwise(points)]
    if inside and after:
        gaps.append(min(after[0], end) - inside[-1])
    return max(gaps)


def run_drill(drill: Drill, cut_for: float, latency: float) -> dict[str, Any]:
    up = cli(
        "up", str(drill.file), "--state-dir", str(drill.state), "--lab", "--detach", "--wait",
        "--allow-spof", "--timeout", "300", timeout=450,
    )  # fmt: skip
    if up.returncode != 0:
        raise RuntimeError(up.stdout + up.stderr)
    wait("us primary writable", lambda: drill.rw("us1") or drill.rw("us2"), 180)
    wait("eu streaming from us", lambda: drill.streaming(["eu1", "eu2"]), 180)
    drill.client("appus", "--create", drill.dsn(["us1", "us2"]))
    us_dsn = drill.dsn(["us1", "us2", "eu1", "eu2"])
    eu_dsn = drill.dsn(["eu1", "eu2", "us1", "us2"])
    writers = {}
    for region, dsn, first in (("us", us_dsn, US_WRITER_IDS), ("eu", eu_dsn, EU_WRITER_IDS)):
        ready = drill.base / f"ready-{region}"
        argv = [
            SPOFLESS, "lab", "exec", str(drill.file), f"app{region}", "--", sys.executable,
            CLIENT, "--write", dsn.replace("connect_timeout=3", "connect_timeout=2"), "600",
            str(ready), str(first), str(drill.stop_file),
        ]  # fmt: skip
        writers[region] = (
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            ready,
        )
    figures: dict[str, Any] = {}
    t: dict[str, float] = {}  # wall-clock times of the drill's steps
    try:
        for region, (_proc, ready) in writers.items():
            wait(f"the {region} writer acknowledged", ready.exists, 120)
        time.sleep(5)
        t["cut"] = time.time()
        subprocess.run(
            [SPOFLESS, "lab", "fault", str(drill.file), "cut", "region:us"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        t["cut_done"] = time.time()  # the cut took effect between the two
        refused, took = drill.promote("eu")
        figures["refused_without_force"] = refused.returncode == 2 and "--force" in refused.stderr
        figures["refused_command_s"] = took
        forced, took = drill.promote("eu", "--force")
        if forced.returncode != 0:
            raise RuntimeError(f"promote-region --force: {forced.stdout}{forced.stderr}")
        t["promoted"] = time.time()
        figures["promote_output"] = forced.stdout.strip().splitlines()
        figures["promote_command_s"] = took
        time.sleep(max(0.0, t["cut_done"] + cut_for - time.time()))
        t["heal"] = time.time()
        subprocess.run(
            [SPOFLESS, "lab", "fault", str(drill.file), "restore"], capture_output=True, timeout=60
        )
        wait("us streaming from eu (rewound)", lambda: drill.streaming(["us1", "us2"]), 300)
        figures["us_rejoined_after_heal_s"] = time.time() - t["heal"]
        time.sleep(5)
        t["failback"] = time.time()
        back, took = drill.promote("us")
        if back.returncode != 0:
            raise RuntimeError(f"promote-region --region us: {back.stdout}{back.stderr}")
        figures["failback_output"] = back.stdout.strip().splitlines()
        figures["failback_command_s"] = took
        wait("eu streaming from us again", lambda: drill.streaming(["eu1", "eu2"]), 300)
        time.sleep(5)
        t["end"] = time.time()
    finally:
        drill.stop_file.touch()
        reports = {}
        for region, (proc, _ready) in writers.items():
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate(timeout=10)
            if proc.returncode != 0:
                raise RuntimeError(f"{region} writer: {err[-2000:]}")
            reports[region] = json.loads(out)
    final = next(h for h in ("us1", "us2") if drill.rw(h))
    held = set(drill.client("appus", "--ids", drill.one(final)))
    keep = os.environ.get("SPOFLESS_KEEP_LOGS")
    if keep:
        raw = {"times": t, "reports": reports, "held": sorted(held)}
        (Path(keep) / "regiondrill-raw.json").write_text(json.dumps(raw))
    figures.update(tally(reports, held, t, latency))
    return figures


def tally(
    reports: dict[str, Any], held: set[int], t: dict[str, float], latency: float
) -> dict[str, Any]:
    """The figures from the writers' acknowledgements ([id, port, wall time]) and the ids
    the final primary holds.

    A lost write is acknowledged and missing from the final primary. The cut's instant
    is known from the data: it fell after the last write us acknowledged that eu holds
    (its WAL had reached eu) and before the first one that is lost. What a region loss
    at that instant costs (the RPO) is the lost writes acknowledged up to one crossing
    (`latency`) after that last kept one (their WAL could have been in flight), and the
    window between the two acknowledgements bounds it in seconds. Every later lost write
    was acknowledged by the isolated, unfenced old primary (lost when it is rewound).
    """
    out: dict[str, Any] = {}
    acks = sorted((a for r in reports.values() for a in r["acks"]), key=lambda a: a[2])
    lost = [a for a in acks if a[0] not in held]
    by_us = [a for a in acks if a[1] < EU_PORT and t["cut"] <= a[2] < t["failback"]]
    kept_us = [a for a in by_us if a[0] in held]
    lost_us = [a for a in by_us if a[0] not in held]
    out["acknowledged"] = len(acks)
    out["lost"] = len(lost)
    out["lost_acked_by_eu"] = sum(1 for a in lost if a[1] >= EU_PORT)  # must be 0
    out["lost_from_failback"] = sum(1 for a in lost if a[2] >= t["failback"])  # must be 0
    out["cut_command_s"] = t["cut_done"] - t["cut"]
    if kept_us and lost_us:
        last_kept, first_lost = kept_us[-1][2], lost_us[0][2]
        at_cut = [a for a in lost_us if a[2] <= last_kept + latency / 1000]
        out["cut_effective_after_s"] = last_kept - t["cut"]
        out["rpo_writes"] = len(at_cut)
        out["rpo_s_at_most"] = first_lost - last_kept
        out["kept_after_a_lost_one"] = sum(1 for a in kept_us if a[2] > first_lost)  # 0
        isolated = lost_us[len(at_cut) :]
        out["lost_isolated_region"] = len(isolated)
        if isolated:
            out["isolated_region_acked_for_s"] = isolated[-1][2] - isolated[0][2]
            out["isolated_region_acked_until_heal_plus_s"] = isolated[-1][2] - t["heal"]
    first_eu = next((a[2] for a in acks if a[2] > t["cut"] and a[1] >= EU_PORT), None)
    out["writes_resumed_in_eu_after_cut_s"] = (
        first_eu - t["cut"] if first_eu is not None else float("nan")
    )
    out["promoted_after_cut_s"] = t["promoted"] - t["cut"]
    for region, r in reports.items():
        mine = r["acks"]
        out[f"{region}_writer_outage_cut_s"] = gap_within(mine, t["cut"], t["heal"])
        out[f"{region}_writer_outage_heal_s"] = gap_within(mine, t["heal"], t["failback"])
        out[f"{region}_writer_outage_failback_s"] = gap_within(mine, t["failback"], t["end"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--latency", type=float, default=30.0, help="one way, between regions (ms)")
    ap.add_argument("--cut-for", type=float, default=15.0, help="seconds region us stays cut")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="spofless-regiondrill-"))
    base.chmod(0o755)
    drill = Drill(base, args.latency)
    try:
        figures = run_drill(drill, args.cut_for, args.latency)
    finally:
        keep = os.environ.get("SPOFLESS_KEEP_LOGS")
        if keep and (drill.state / "logs").exists():
            shutil.copytree(
                drill.state / "logs", Path(keep) / "regiondrill-logs", dirs_exist_ok=True
            )
        cli("down", str(drill.file), "--state-dir", str(drill.state), timeout=240)
        subprocess.run([SPOFLESS, "lab", "down", str(drill.file)], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    ok = figures["lost_acked_by_eu"] == figures["lost_from_failback"] == 0
    ok = ok and figures["refused_without_force"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
