"""An error in the middle of a drill still takes every fault back (real processes).

The runner against a stand-in for the stack's status (one "instance", a real `sleep`
process, and a real listening socket for the traffic): the progress callback raises
once the pause is in place; the error comes out of run_drill, and the process runs
again.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from spofless.drill.journal import Journal
from spofless.drill.plans import Phase, Plan, fault
from spofless.drill.runner import Progress, run_drill
from spofless.drill.system import System
from spofless.topology import load_topology_text
from spofless.topology._drills import SteadyState, TrafficSpec

pytestmark = pytest.mark.integration


class StandIn(System):
    def __init__(self, topology: Any, docs: list[dict[str, Any]], state_dir: Path) -> None:
        self.topology = topology
        self.lab = None
        self.plan = SimpleNamespace(topology=topology, state_dir=state_dir)  # type: ignore[assignment]
        self._docs = docs

    def document(self) -> dict[str, Any]:
        return {"instances": self._docs}


@pytest.mark.timeout(60)
def test_an_error_during_a_drill_takes_the_pause_back(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    proc = subprocess.Popen(["sleep", "60"])
    try:
        topology = load_topology_text(
            f"name: t\ncomponents:\n  web: {{kind: service, instances: 1, port: {port}}}\n"
            "entry: [web]\n"
        )
        doc = {
            "name": "web/0", "component": "web", "index": 0, "host": None, "kind": "service",
            "state": "up", "pid": proc.pid, "pgid": None, "role": None, "restarts": 0,
        }  # fmt: skip
        plan = Plan(
            "scenario:t",
            (Phase("t", (fault(at=0.2, pause="web/0", **{"for": 30}),), 10.0),),
            (TrafficSpec.model_validate({"tcp": {"to": "web"}, "rate": 20}),),
            SteadyState(within=1),
            None,
        )

        def progress(p: Progress) -> None:
            if p.active:
                assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
                raise RuntimeError("boom")

        started = time.monotonic()
        with pytest.raises(RuntimeError, match="boom"):
            run_drill(StandIn(topology, [doc], tmp_path), plan, progress)
        assert time.monotonic() - started < 20
        assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED
        assert Journal(tmp_path).pending() == {}
    finally:
        proc.kill()
        proc.wait(10)
        server.close()
