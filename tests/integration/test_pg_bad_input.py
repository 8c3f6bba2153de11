"""An agent started while etcd is down: it says so, starts no PostgreSQL, creates no data."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from free_ports import port_block

REPO = Path(__file__).resolve().parents[2]
SPOFLESS = str(Path(sys.executable).parent / "spofless")


def test_agent_with_etcd_down_waits_and_says_why(tmp_path: Path) -> None:
    etcd, pg, api = port_block(3), port_block(3), port_block(3)
    text = (REPO / "examples" / "postgres-ha.yaml").read_text()
    text = text.replace("23790", str(etcd)).replace("23800", str(port_block(3)))
    text = text.replace("25432", str(pg)).replace("28008", str(api))
    topo = tmp_path / "pg.yaml"
    topo.write_text(text)
    state = tmp_path / "state"
    argv = [SPOFLESS, "pg", "agent", str(topo), "--component", "db", "--instance", "0"]
    # Without its secrets the agent refuses at once, and says how to make them.
    no_secrets = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert no_secrets.returncode == 2 and "spofless secrets init" in no_secrets.stderr
    assert "Traceback" not in no_secrets.stderr
    subprocess.run([SPOFLESS, "secrets", "init", str(topo)], check=True, timeout=30)
    agent = subprocess.Popen(
        [*argv, "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
        assert agent.poll() is None, "the agent must wait for etcd, not exit"
    finally:
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=30)
    assert "etcd unreachable; PostgreSQL stays stopped" in out, out
    assert "Traceback" not in out, out
    # Nothing was initialised while the cluster was unknown.
    assert not list(state.glob("data/*/PG_VERSION")), list(state.rglob("*"))
    # One line per loop, not one per request to each member.
    assert out.count("\n") < 40, out
