"""`make demo-lab`'s pieces that run without a lab: the refusal without root and the
lab's copy of the demo topology (the full demo is `sudo make demo-lab`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spofless.topology import LoadBalancerComponent, load_topology

REPO = Path(__file__).resolve().parents[2]


def test_without_root_it_says_so_and_exits_2() -> None:
    script = ["bash", str(REPO / "scripts" / "demo_lab.sh")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and no setpriv to drop privileges")
        script = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *script]
    out = subprocess.run(script, capture_output=True, text=True, timeout=30, cwd="/")
    assert out.returncode == 2
    assert "run it as root (sudo make demo-lab)" in out.stderr
    assert "make demo runs the same topology on this machine without root" in out.stderr


def test_the_lab_copy_adds_admin_tokens_and_near_regions_and_nothing_else(
    tmp_path: Path,
) -> None:
    source = REPO / "examples" / "demo.yaml"
    dest = tmp_path / "demo-lab.yaml"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo_lab_topology.py"), str(source), str(dest)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert oct(dest.stat().st_mode & 0o777) == "0o600"  # it holds the tokens
    before, after = source.read_text().splitlines(), dest.read_text().splitlines()
    added = [line for line in after if line not in before]
    assert [a.split(":")[0].strip() for a in added] == [
        "admin_token",
        "token_file",
        "lab",
        "links",
        "region",
    ]
    assert [line for line in after if line not in added] == before
    topology = load_topology(dest)
    lb = topology.components["lb"]
    assert isinstance(lb, LoadBalancerComponent) and lb.admin_token
    assert topology.data["lab"]["links"]["region"]["latency_ms"] == 5
    # The monitors' API is off loopback in the lab too: a token from a private file.
    token = Path(topology.data["components"]["monitor"]["token_file"])
    assert token.parent == tmp_path and oct(token.stat().st_mode & 0o777) == "0o600"
