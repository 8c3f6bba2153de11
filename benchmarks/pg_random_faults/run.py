"""The long run of the randomized PostgreSQL fault sequences (issue: every member
rejoins by itself after any sequence of faults).

    .venv/bin/python benchmarks/pg_random_faults/run.py [--seeds 1,2,3,4,5] [--faults 20]

Runs tests/integration/test_pg_random_faults.py (the same cluster, nemesis, writers
and checker as the suite's short run) once per seed, then prints per seed the
acknowledged / uncertain / lost / phantom / divergent counts, and per fault kind how
often it ran and the worst time from the end of the fault to full redundancy (one
primary, every other member streaming from it on its timeline). Exit status 1 when
any seed failed. Every process is stopped by the test's fixtures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST = ROOT / "tests" / "integration" / "test_pg_random_faults.py"
FAULT = re.compile(r"\[seed (\d+)\] #\d+ (\S+)(?: for [\d.]+s)? on \S+: whole again ([\d.]+)s")
VERDICT = re.compile(r"\[seed (\d+)\] (\d+ acknowledged, .*)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--log", type=Path, default=Path("/tmp/spofless-pg-random-faults.log"))
    args = ap.parse_args()
    worst: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    failed = []
    for seed in args.seeds.split(","):
        env = {**os.environ, "SPOFLESS_FAULT_SEEDS": seed, "SPOFLESS_FAULTS": str(args.faults)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(TEST)]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        out = proc.stdout + proc.stderr
        with args.log.open("a") as log:
            log.write(out)
        for m in FAULT.finditer(out):
            count[m.group(2)] += 1
            worst[m.group(2)] = max(worst[m.group(2)], float(m.group(3)))
        verdict = VERDICT.search(out)
        status = "passed" if proc.returncode == 0 else "FAILED"
        if proc.returncode != 0:
            failed.append(seed)
        print(f"seed {seed}: {status}; {verdict.group(2) if verdict else 'no verdict'}", flush=True)
    print(f"\n{'fault kind':<20} {'runs':>5} {'worst heal (s)':>15}")
    for kind in sorted(count):
        print(f"{kind:<20} {count[kind]:>5} {worst[kind]:>15.1f}")
    print(f"\n{sum(count.values())} faults in all; failed seeds: {', '.join(failed) or 'none'}")
    print(f"full output: {args.log}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
