"""One drill at a time on a system: the state dir's lock, and etcd's across machines.

Two drills of one system from two machines are two state dirs here, sharing a real
etcd: the second is refused with the first's pid, host and start, and runs once the
first let go. (The state dir's lock on a running stack is tested in
test_drill_stack.py, with a drill holding a pause.)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from etcd_fixtures import RunningCluster

from spofless.drill.errors import DrillError
from spofless.drill.lock import DrillLock

pytestmark = pytest.mark.integration

KEY = "/spofless/t/drill"


def test_a_second_drill_is_refused_naming_the_first(
    etcd_cluster: RunningCluster, tmp_path: Path
) -> None:
    here, there = tmp_path / "a", tmp_path / "b"
    here.mkdir()
    there.mkdir()
    etcd = {"key": KEY, "endpoints": etcd_cluster.endpoints}
    with DrillLock(here, "scenario:one", **etcd):  # type: ignore[arg-type]
        # The same machine: the state dir's lock says who holds it.
        with pytest.raises(DrillError) as same, DrillLock(here, "random"):
            pass
        assert f"another drill runs on this system: pid {os.getpid()}" in str(same.value)
        assert "(scenario:one)" in str(same.value) and "UTC" in str(same.value)
        # Another machine (another state dir): etcd's key says who holds it.
        with pytest.raises(DrillError) as other, DrillLock(there, "random", **etcd):  # type: ignore[arg-type]
            pass
        text = str(other.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in text
        assert f"etcd key {KEY}" in text
    # Both let go: the next drill runs, from either machine.
    with DrillLock(there, "random", **etcd):  # type: ignore[arg-type]
        pass
    with DrillLock(here, "random", **etcd):  # type: ignore[arg-type]
        pass


def test_etcd_not_answering_refuses_the_drill(tmp_path: Path) -> None:
    nowhere = ["http://127.0.0.1:9"]
    with (
        pytest.raises(DrillError, match="cannot take the drill lock"),
        DrillLock(tmp_path, "random", key=KEY, endpoints=nowhere),
    ):
        pass
    # Nothing held: the next drill here takes the state dir's lock.
    with DrillLock(tmp_path, "random"):
        pass
