"""Region drill, automatic promotion: the primary region is cut off (alive) several times
in a row, the other region promotes itself on a third-region quorum's word, the cut is
healed and the old region rejoins as a standby by itself. In the lab.

Run as root from the repository root:

    .venv/bin/python benchmarks/region_drill/auto.py [--latency 30] [--cuts 3] [--ttl 6]

(`SPOFLESS_KEEP_LOGS=DIR` keeps the agents' logs and the raw acknowledgements, which
`--from-raw DIR/regiondrill-auto-raw.json` tallies again.)

The topology of run.py (two clusters of two members, `db` in us and `db_eu` in eu, each
with its own etcd, a writer on an application host in each region) plus a third region
`witness` and a quorum etcd of three members (us1, eu1, w1), and `auto_promote` on both
clusters, so that the primary moves back and forth: cut 1 isolates us, cut 2 eu, ...

Per cut: the RTO (cut to the first write the other cluster acknowledged), each writer's
longest gap between acknowledgements while the cut lasts, the writes the isolated primary
acknowledged that the final primary lacks (lost: the region lease's ttl minus its margin,
plus the replication lag), writes it acknowledged after the other region's first (must
be 0), and the time from the heal until its two members stream from the new primary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("region_drill_run", HERE / "run.py")
assert _spec is not None and _spec.loader is not None
rd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rd)

WITNESS = """\
  witness: {{zones: [a]}}
hosts:
  w1: {{zone: witness/a}}
"""
QUORUM = """\
  quorum: {{kind: etcd, instances: [us1, eu1, w1], min_up: majority, port: 2579, peer_port: 2590}}
  app:"""


def topology(ttl: int) -> str:
    auto = f"    auto_promote: {{{{quorum: quorum, ttl: {ttl}}}}}\n"
    return (
        rd.TOPOLOGY.replace("hosts:\n", WITNESS, 1)
        .replace("  app:", QUORUM, 1)
        .replace("    needs: [etcd_us]\n", "    needs: [etcd_us]\n" + auto, 1)
        .replace("    standby_of: db\n", "    standby_of: db\n" + auto, 1)
    )


class AutoDrill(rd.Drill):  # type: ignore[misc,name-defined]
    def __init__(self, base: Path, latency: float, ttl: int) -> None:
        super().__init__(base, latency)
        self.file.write_text(
            topology(ttl).format(latency=latency, us_port=rd.US_PORT, eu_port=rd.EU_PORT)
        )


def region_of(port: int) -> str:
    """Which cluster acknowledged: instance i listens on port + i."""
    return "us" if port < rd.EU_PORT else "eu"


def run_cuts(drill: AutoDrill, cuts: int, cut_for: float) -> list[dict[str, Any]]:
    up = rd.cli(
        "up", str(drill.file), "--state-dir", str(drill.state), "--lab", "--detach", "--wait",
        "--allow-spof", "--timeout", "300", timeout=450,
    )  # fmt: skip
    if up.returncode != 0:
        raise RuntimeError(up.stdout + up.stderr)
    rd.wait("us primary writable", lambda: drill.rw("us1") or drill.rw("us2"), 180)
    rd.wait("eu streaming from us", lambda: drill.streaming(["eu1", "eu2"]), 180)
    drill.client("appus", "--create", drill.dsn(["us1", "us2"]))
    writers = {}
    for region, order, first in (
        ("us", ["us1", "us2", "eu1", "eu2"], rd.US_WRITER_IDS),
        ("eu", ["eu1", "eu2", "us1", "us2"], rd.EU_WRITER_IDS),
    ):
        ready = drill.base / f"ready-{region}"
        dsn = drill.dsn(order).replace("connect_timeout=3", "connect_timeout=2")
        argv = [
            rd.SPOFLESS, "lab", "exec", str(drill.file), f"app{region}", "--", sys.executable,
            rd.CLIENT, "--write", dsn, "1800", str(ready), str(first), str(drill.stop_file),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        writers[region] = (proc, ready)
    steps: list[dict[str, Any]] = []
    failure = None
    try:
        for region, (_proc, ready) in writers.items():
            rd.wait(f"the {region} writer acknowledged", ready.exists, 120)
        primary, other = "us", "eu"
        for _ in range(cuts):
            try:
                steps.append(one_cut(drill, primary, other, cut_for))
            except RuntimeError as exc:  # what the cuts before it measured is kept
                failure = f"cut of {primary}: {exc}"
                print(failure, file=sys.stderr)
                break
            primary, other = other, primary
        time.sleep(3)
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
    final = next(h for h in ("us1", "us2", "eu1", "eu2") if drill.rw(h))
    held = set(drill.client(f"app{final[:2]}", "--ids", drill.one(final)))
    keep = os.environ.get("SPOFLESS_KEEP_LOGS")
    if keep:
        raw = {"steps": steps, "reports": reports, "held": sorted(held)}
        (Path(keep) / "regiondrill-auto-raw.json").write_text(json.dumps(raw))
    out = tally(steps, reports, held)
    if failure:
        out.append({"failed": failure})
    return out


def one_cut(drill: AutoDrill, primary: str, other: str, cut_for: float) -> dict[str, Any]:
    """Cut `primary` off, wait for `other` to promote itself, heal, wait for the rejoin."""
    time.sleep(5)
    t: dict[str, Any] = {"victim": primary, "cut": time.time()}
    subprocess.run(
        [rd.SPOFLESS, "lab", "fault", str(drill.file), "cut", f"region:{primary}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    rd.wait(
        f"{other} promoted by itself", lambda: drill.rw(f"{other}1") or drill.rw(f"{other}2"), 120
    )
    t["promoted_seen"] = time.time()
    time.sleep(max(0.0, t["cut"] + cut_for - time.time()))
    t["heal"] = time.time()
    subprocess.run(
        [rd.SPOFLESS, "lab", "fault", str(drill.file), "restore"], capture_output=True, timeout=60
    )
    rd.wait(
        f"{primary} streaming from {other}",
        lambda: drill.streaming([f"{primary}1", f"{primary}2"]),
        300,
    )
    t["rejoined"] = time.time()
    return t


def tally(
    steps: list[dict[str, Any]], reports: dict[str, Any], held: set[int]
) -> list[dict[str, Any]]:
    """Per cut, from the writers' acknowledgements ([id, port, wall time])."""
    acks = sorted((a for r in reports.values() for a in r["acks"]), key=lambda a: a[2])
    out = []
    for i, t in enumerate(steps):
        end = steps[i + 1]["cut"] if i + 1 < len(steps) else float("inf")
        victim = t["victim"]
        first_new = next(
            (a[2] for a in acks if a[2] > t["cut"] and region_of(a[1]) != victim), float("nan")
        )
        by_victim = [a for a in acks if t["cut"] - 30 <= a[2] < end and region_of(a[1]) == victim]
        lost = [a for a in by_victim if a[0] not in held]
        after_cut = [a for a in by_victim if a[2] >= t["cut"]]
        f = {
            "victim": t["victim"],
            "rto_cut_to_first_write_s": first_new - t["cut"],
            "promotion_seen_s": t["promoted_seen"] - t["cut"],
            "victim_last_ack_after_cut_s": (after_cut[-1][2] - t["cut"]) if after_cut else None,
            "lost_writes": len(lost),
            "lost_acked_after_cut_s": [round(a[2] - t["cut"], 2) for a in lost[:1] + lost[-1:]],
            "victim_acks_after_new_first": sum(1 for a in by_victim if a[2] > first_new),
            # The `lab fault cut` command takes a while to act on a loaded machine: the first
            # write the victim acknowledged that the other never received marks the cut
            # (within one crossing of replication lag).
            "rto_from_effective_cut_s": first_new - lost[0][2] if lost else None,
            "victim_acked_after_effective_cut_s": lost[-1][2] - lost[0][2] if lost else None,
            "heal_to_rejoined_s": t["rejoined"] - t["heal"],
        }
        for region, r in reports.items():
            f[f"{region}_writer_gap_s"] = rd.gap_within(r["acks"], t["cut"], t["heal"])
        out.append(f)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--latency", type=float, default=30.0, help="one way, between regions (ms)")
    ap.add_argument("--cuts", type=int, default=3, help="cuts in a row, alternating regions")
    ap.add_argument("--cut-for", type=float, default=15.0, help="seconds each cut lasts")
    ap.add_argument("--ttl", type=int, default=6, help="the region lease's ttl (s)")
    ap.add_argument("--from-raw", type=Path, help="tally a kept raw file again, run nothing")
    args = ap.parse_args(argv)
    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())
        print(json.dumps(tally(raw["steps"], raw["reports"], set(raw["held"])), indent=1))
        return 0
    if os.geteuid() != 0:
        print("error: the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="spofless-regionauto-"))
    base.chmod(0o755)
    drill = AutoDrill(base, args.latency, args.ttl)
    try:
        cuts = run_cuts(drill, args.cuts, args.cut_for)
    finally:
        keep = os.environ.get("SPOFLESS_KEEP_LOGS")
        if keep and (drill.state / "logs").exists():
            shutil.copytree(
                drill.state / "logs", Path(keep) / "regionauto-logs", dirs_exist_ok=True
            )
        rd.cli("down", str(drill.file), "--state-dir", str(drill.state), timeout=240)
        subprocess.run(
            [rd.SPOFLESS, "lab", "down", str(drill.file)], capture_output=True, timeout=120
        )
        shutil.rmtree(base, ignore_errors=True)
    done = [c for c in cuts if "failed" not in c]
    summary = (
        {
            k: statistics.median(c[k] for c in done)
            for k in ("rto_cut_to_first_write_s", "lost_writes", "heal_to_rejoined_s")
        }
        if done
        else {}
    )
    print(json.dumps({"cuts": cuts, "median": summary}, indent=1))
    ok = len(done) == len(cuts) and all(c["victim_acks_after_new_first"] == 0 for c in done)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
