"""`up --lab` without the lab: said, and None (run on the file's addresses); the lab record."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.lab import Lab, LabUnavailable
from spofless.stack import StackError, _lab
from spofless.topology import load_topology_text

TOPOLOGY = "name: t\ncomponents:\n  w: {kind: service, instances: 2}\nentry: [w]\n"


def test_without_root_the_lab_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise LabUnavailable("the lab needs root (network namespaces); run it as root")

    monkeypatch.setattr(_lab, "check_available", unavailable)
    said: list[str] = []
    assert _lab.start_lab(load_topology_text(TOPOLOGY), said.append) is None
    assert said == [
        "no lab: the lab needs root (network namespaces); run it as root; "
        "running every host on its own address instead (no --lab)"
    ]


def test_the_lab_record_round_trips(tmp_path: Path) -> None:
    assert _lab.recorded_lab(tmp_path) is None
    _lab.record_lab(tmp_path, Lab("abc123", tmp_path / "labs"))
    assert _lab.recorded_lab(tmp_path) == Lab("abc123", tmp_path / "labs")
    _lab.forget_lab(tmp_path)
    assert _lab.recorded_lab(tmp_path) is None
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(StackError, match=r"lab\.json cannot be read"):
        _lab.recorded_lab(tmp_path)


def test_the_lab_topology_file_reads_back_as_the_same_topology(tmp_path: Path) -> None:
    from spofless.topology import load_topology

    topology = load_topology_text(TOPOLOGY.replace("instances: 2", "instances: 2, port: 80"))
    _lab.write_lab_topology(tmp_path, topology)
    again = load_topology(_lab.lab_topology_path(tmp_path))
    # The same, but for where its secrets are: still the original file's.
    assert {k: v for k, v in again.data.items() if k != "security"} == topology.data
    assert again.data["security"]["secrets"].endswith("secrets")
