"""`spofless drill examples/postgres-ha.yaml --random --seed N --faults 20`, for 5 seeds.

    .venv/bin/python benchmarks/drill_random/run.py [--seeds 1,2,3,4,5] [--faults 20]

Starts examples/postgres-ha.yaml with `spofless up` (its ports moved to free ones, in
a directory of its own), runs one randomized drill per seed against it, one after
another (each drill starts from full redundancy: the drill refuses otherwise), then
`spofless down`, whatever happened (a drill that leaves the system not whole: its
logs are kept in --out and the stack is started again for the next seed). Prints
per seed the writes acknowledged,
uncertain, lost, phantom and divergent, whether the drill was ok and the system whole
again, and per fault kind how often it ran, the worst outage the SQL writers saw
(`rto`) and the worst time to full redundancy after it (`recover`). The JSON reports
are kept in --out. Exit status 1 when any drill was not ok or lost a write.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "postgres-ha.yaml"
SPOFLESS = str(Path(sys.executable).with_name("spofless"))


def free_block(n: int, taken: set[int]) -> int:
    """A first port p with p..p+n-1 free on 127.0.0.1 and not in `taken`, below the
    ephemeral range (32768+): a member killed by the drill must be able to listen on
    its port again, which a client's outgoing connection may hold in that range."""
    rng = random.Random()
    for _ in range(500):
        first = rng.randrange(20000, 32000 - n)
        ports = range(first, first + n)
        if taken & set(ports):
            continue
        ok = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            taken.update(ports)
            return first
    raise RuntimeError("no free block of ports")


def moved_topology(dest: Path) -> Path:
    """The example with each port block moved to free ports (nothing else changed)."""
    text = EXAMPLE.read_text()
    taken: set[int] = set()
    for key in ("port", "api_port", "peer_port"):
        for old in re.findall(rf"^\s+{key}: (\d+)", text, flags=re.M):
            new = free_block(3, taken)
            text = re.sub(rf"^(\s+{key}:) {old}\b", rf"\1 {new}", text, count=1, flags=re.M)
    path = dest / "postgres-ha.yaml"
    path.write_text(text)
    return path


def spofless(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SPOFLESS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("/tmp/spofless-drill-random"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="spofless-drill-random-"))
    base.chmod(0o755)  # PostgreSQL runs as `postgres` and must reach its data dirs
    path = moved_topology(base)
    state = ["--state-dir", str(base / "state")]
    docs: dict[str, dict[str, Any]] = {}
    failed: list[str] = []

    def start() -> bool:
        up = spofless(
            "up", str(path), *state, "--detach", "--wait", "--timeout", "180", timeout=300
        )
        if up.returncode != 0:
            print(up.stdout + up.stderr)
        return up.returncode == 0

    try:
        if not start():
            return 1
        for seed in args.seeds.split(","):
            started = time.monotonic()
            out = spofless(
                "drill", str(path), *state, "--random", "--seed", seed,
                "--faults", str(args.faults), "--format", "json",
                timeout=60 * args.faults + 600,
            )  # fmt: skip
            (args.out / f"seed-{seed}.json").write_text(out.stdout)
            (args.out / f"seed-{seed}.err").write_text(out.stderr)
            try:
                doc = json.loads(out.stdout)
            except ValueError:
                print(f"seed {seed}: exit {out.returncode}, no report: {out.stderr[-2000:]}")
                failed.append(seed)
                continue
            docs[seed] = doc
            if not doc["after"]["whole"]:
                # Kept for the post-mortem; the next seed starts from a fresh stack.
                shutil.copytree(base / "state" / "logs", args.out / f"seed-{seed}-logs")
                spofless("down", str(path), *state, timeout=120)
                print(f"seed {seed}: not whole after the drill; stack started again", flush=True)
                if not start():
                    return 1
            d = doc["data"] or {}
            if out.returncode != 0 or d.get("lost"):
                failed.append(seed)
            print(
                f"seed {seed}: exit {out.returncode}, ok {doc['ok']}, "
                f"{len(doc['faults'])} faults in {time.monotonic() - started:.0f}s; "
                f"{d.get('acknowledged')} acknowledged, {d.get('uncertain')} uncertain, "
                f"{d.get('lost')} lost, {d.get('phantom')} phantom, "
                f"{len(d.get('divergent') or {})} divergent; whole after: "
                f"{doc['after']['whole']}",
                flush=True,
            )
    finally:
        spofless("down", str(path), *state, timeout=120)
        shutil.rmtree(base, ignore_errors=True)
    runs: dict[str, int] = defaultdict(int)
    rto: dict[str, float] = defaultdict(float)
    recover: dict[str, float] = defaultdict(float)
    unapplied = 0
    for doc in docs.values():
        for f in doc["faults"]:
            kind = f["phase"].split(" ", 1)[1]
            if not f["applied"]:
                unapplied += 1
                continue
            runs[kind] += 1
            rto[kind] = max(rto[kind], f["rto"])
            recover[kind] = max(recover[kind], f["recover"] or 0.0)
    print(f"\n{'fault kind':<20} {'runs':>5} {'worst outage (s)':>17} {'worst recover (s)':>18}")
    for kind in sorted(runs):
        print(f"{kind:<20} {runs[kind]:>5} {rto[kind]:>17.1f} {recover[kind]:>18.1f}")
    print(f"\nfaults not applied: {unapplied}; failed seeds: {', '.join(failed) or 'none'}")
    print(f"reports: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
