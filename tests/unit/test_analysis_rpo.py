"""`check` states what a failover can lose per PostgreSQL component: RPO 0 only for strict."""

from __future__ import annotations

import json
from pathlib import Path

from spofless.analysis import analyze
from spofless.analysis._json import render_json
from spofless.topology import load_topology

TOPOLOGY = """\
name: rpo
components:
  etcd: {{kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2390}}
  db: {{kind: postgres, instances: 3, port: 5432, api_port: 8008, needs: [etcd]{extra}}}
entry: [db]
"""


def _loss(tmp_path: Path, extra: str) -> dict[str, object]:
    f = tmp_path / "t.yaml"
    f.write_text(TOPOLOGY.format(extra=extra))
    doc = json.loads(render_json(analyze(load_topology(f))))
    return dict(doc["data_loss"][0])


def test_rpo_zero_only_for_strict_synchronous(tmp_path: Path) -> None:
    strict = _loss(tmp_path, ", synchronous: strict")
    assert strict["rpo_zero"] is True and strict["mode"] == "synchronous: strict"
    sync = _loss(tmp_path, ", synchronous: true")
    assert sync["rpo_zero"] is False and "degraded commits can be lost" in str(sync["text"])
    asynchronous = _loss(tmp_path, "")
    assert asynchronous["rpo_zero"] is False and "1048576 bytes" in str(asynchronous["text"])
