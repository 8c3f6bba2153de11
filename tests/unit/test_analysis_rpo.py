"""`check` states what a failover can lose per PostgreSQL component: RPO 0 only for strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spofless.analysis import analyze
from spofless.analysis._json import render_json
from spofless.analysis._rpo import Measured, Recovery
from spofless.topology import TopologyError, load_topology, load_topology_text

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


RECOVERY = """\
name: dr
components:
  etcd: {{kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2390}}
  db: {{kind: postgres, instances: {n}, port: 5432, api_port: 8008, needs: [etcd]{extra}}}
  web: {{kind: service, instances: 2, needs: [db]}}
entry: [web]
{objectives}
"""
BACKUP = ", backup: {repositories: [{type: fs, path: /b}]}"


def _recovery(
    n: int, extra: str = "", objectives: str = "", measured: dict[str, Measured] | None = None
) -> Recovery:
    t = load_topology_text(RECOVERY.format(n=n, extra=extra, objectives=objectives))
    (r,) = analyze(t, measured=measured).recovery
    return r


def test_tier_and_objectives_per_replication_mode() -> None:
    want = "objectives: {rto: 60s, rpo: 0}"
    hot = _recovery(3, ", synchronous: strict", want)
    assert (hot.component, hot.data, hot.tier) == ("web", "db", "hot standby")
    assert hot.rpo_seconds == 0 and hot.rto_seconds == 3.5 and hot.unmet == ()
    degrading = _recovery(3, ", synchronous: true", want)
    (u,) = degrading.unmet
    assert u.objective == "rpo" and "synchronous: strict" in u.fix
    warm = _recovery(3, "", want)
    assert warm.tier == "warm standby" and [x.objective for x in warm.unmet] == ["rpo"]
    slow = _recovery(3, ", synchronous: strict", "objectives: {rto: 2s}")
    (u,) = slow.unmet
    assert u.objective == "rto" and "3.5 s" in u.why and "shorter ttl" in u.fix
    # Nothing declared: stated, never flagged.
    assert _recovery(1).unmet == () and _recovery(1).tier == "none"


def test_backups_only_use_the_measured_restore() -> None:
    want = "objectives: {rto: 60s, rpo: 5s}"
    unknown = _recovery(1, BACKUP, want)
    assert unknown.tier == "backup/restore" and unknown.rto_seconds is None
    assert {u.objective for u in unknown.unmet} == {"rto", "rpo"}
    assert "spofless backup drill" in unknown.rto
    drill = {"db": Measured(restore_seconds=20.0, rpo_seconds=3.0, at=0.0)}
    met = _recovery(1, BACKUP, want, drill)
    assert met.rto_seconds == 20.0 and met.rpo_seconds == 3.0 and met.unmet == ()
    assert "20 s by the last drill" in met.rto
    slow = _recovery(1, BACKUP, "objectives: {rto: 10s}", drill)
    (u,) = slow.unmet
    assert "a restore took 20 s" in u.why and "second instance" in u.fix
    none = _recovery(1, "", want)
    assert none.tier == "none" and len(none.unmet) == 2


def test_check_reads_the_newest_drill_and_fails_on_unmet_objectives(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spofless.backup import DrillResult, record_drill
    from spofless.cli import main

    f = tmp_path / "dr.yaml"
    f.write_text(RECOVERY.format(n=1, extra=BACKUP, objectives="objectives: {rto: 60s}"))
    state = tmp_path / "state"
    result = CliRunner().invoke(main, ["check", str(f), "--state-dir", str(state)])
    assert result.exit_code == 1 and "no drill measured how long a restore takes" in result.output
    drill = DrillResult("L", 10.0, 5.0, 4.0, 1.0, 1, 1, 99.0, 100.0, False, 50.0, 70.0)
    record_drill(state, "db", "fs:/b", drill)
    result = CliRunner().invoke(
        main, ["check", str(f), "--state-dir", str(state), "--format", "json"]
    )
    doc = json.loads(result.output)
    (r,) = doc["recovery"]
    assert r["rto_seconds"] == 20.0 and r["unmet"] == [] and doc["objectives_met"] is True
    # Still exit 1: db is a single point of failure.
    assert result.exit_code == 1
    f.write_text(RECOVERY.format(n=1, extra=BACKUP, objectives="objectives: {rto: soon}"))
    result = CliRunner().invoke(main, ["check", str(f)])
    assert (
        result.exit_code == 2 and "dr.yaml:7" in result.output and "objectives.rto" in result.output
    )


def test_an_entry_component_may_have_its_own_objectives() -> None:
    text = RECOVERY.format(n=3, extra=", synchronous: strict", objectives="").replace(
        "entry: [web]", "entry: [web, db]"
    )
    both = text + "objectives: {rto: 60s, entry: {db: {rto: 1s}}}\n"
    web, db = analyze(load_topology_text(both)).recovery
    assert web.unmet == () and [u.declared for u in db.unmet] == [1.0]
    with pytest.raises(TopologyError, match=r"objectives.entry.etcd: 'etcd' is not an entry"):
        load_topology_text(text + "objectives: {entry: {etcd: {rto: 1s}}}\n")


def test_sarif_names_each_unmet_objective_at_its_line() -> None:
    from spofless.analysis import render

    text = RECOVERY.format(n=3, extra="", objectives="objectives:\n  rto: 60s\n  rpo: 0\n")
    doc = json.loads(render(analyze(load_topology_text(text)), "sarif"))
    (result,) = [r for r in doc["runs"][0]["results"] if r["ruleId"] == "SPOF004"]
    assert "RPO 0 s cannot be met" in result["message"]["text"]
    assert "synchronous: strict" in result["message"]["text"]
    assert result["locations"][0]["logicalLocations"][0]["name"] == "web"
    assert "SPOF004" in [rule["id"] for rule in doc["runs"][0]["tool"]["driver"]["rules"]]
    (r,) = analyze(load_topology_text(text)).recovery
    (u,) = r.unmet
    assert u.location is not None and u.location.line == 9
