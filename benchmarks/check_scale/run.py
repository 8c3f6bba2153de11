"""Benchmark: `spofless check --max-order 2` on the generated 10,000-instance topology.

Prints the wall time and peak memory (max RSS) of the check process, and the
availability interval it reported. Target: under 10 s and under 1 GiB.
Run from the repository root: .venv/bin/python benchmarks/check_scale/run.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import generate
import yaml_dump


def main() -> int:
    spofless = Path(sys.executable).with_name("spofless")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.yaml"
        with path.open("w") as out:
            yaml_dump.dump(generate.topology(), out)
        start = time.perf_counter()
        proc = subprocess.run(
            [str(spofless), "check", str(path), "--max-order", "2", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        wall = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode not in (0, 1):
        print(proc.stderr, file=sys.stderr)
        return 1
    report = json.loads(proc.stdout)
    print("topology: 10,000 instances, 50 components, 1,000 hosts, 30 zones, 3 regions")
    print(f"wall time: {wall:.2f} s (target < 10 s)")
    print(f"peak RSS: {rss_mib:.0f} MiB (target < 1024 MiB)")
    print(
        f"availability: {report['availability']:.10f} ± {report['availability_error']:.1e} "
        f"(exact: {report['exact']}), SPOFs: {len(report['spofs'])}, "
        f"cut sets: {len(report['cut_sets'])}, cpus: {os.cpu_count()}"
    )
    return 0 if wall < 10 and rss_mib < 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
