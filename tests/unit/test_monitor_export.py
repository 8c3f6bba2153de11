"""`spofless export prometheus-rules` and `export grafana`: the same conditions the monitor
alerts on, from the metrics it exposes (checked by promtool when it is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from spofless.cli import main

TOPOLOGY = """\
name: shop
components:
  db: {kind: postgres, instances: 3, needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2479}
  lb: {kind: load_balancer, instances: 2, port: 8080, workers: 2, routes: [{to: web, backup: [2]}]}
  web: {kind: service, instances: 3, port: 8000, needs: [db]}
  monitor: {kind: monitor, instances: 2, port: 9600, max_lag: 1048576}
entry: [lb]
"""


def test_prometheus_rules(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(TOPOLOGY)
    out = tmp_path / "rules.yaml"
    result = CliRunner().invoke(main, ["export", "prometheus-rules", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = YAML(typ="safe").load(out.read_text())
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert rules["SpoflessLiveSinglePointOfFailure"]["expr"] == (
        'max(spofless_monitor_live_spofs{job="spofless-shop"}) > 0'
    )
    assert rules["SpoflessComponentDown"]["labels"]["severity"] == "critical"
    assert "spofless_monitor_margin_baseline" in rules["SpoflessRedundancyLost"]["expr"]
    assert rules["SpoflessPostgresReplicaLag"]["expr"].endswith("> 1048576")
    # What the monitors record: etcd's quorum, crash loops, a load balancer's CPU.
    assert rules["SpoflessEtcdQuorumAtRisk"]["expr"] == (
        'min by (component) (spofless_monitor_etcd_quorum_margin{job="spofless-shop"}) == 0'
    )
    assert rules["SpoflessEtcdQuorumLost"]["labels"]["severity"] == "critical"
    assert "spofless_monitor_crash_loop" in rules["SpoflessCrashLoop"]["expr"]
    assert rules["SpoflessLoadBalancerCpuHigh"]["expr"].endswith(
        'spofless_monitor_cpu_cores{job="spofless-shop",component="lb"}) > 1.6'
    )
    # A route with backup backends: an alert while it runs on them.
    assert rules["SpoflessRouteOnBackup"]["expr"] == (
        "max by (instance, route) (spofless_lb_route_on_backup) == 1"
    )
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: prometheus): rules parsed as YAML only")
    checked = subprocess.run(
        [promtool, "check", "rules", str(out)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_dashboard(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(TOPOLOGY)
    result = CliRunner().invoke(main, ["export", "grafana", str(path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["title"] == "spofless · shop"
    exprs = [p["targets"][0]["expr"] for p in doc["panels"]]
    assert 'max(spofless_monitor_live_spofs{job="spofless-shop"})' in exprs
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    titles = {p["title"] for p in doc["panels"]}
    assert {"CPU (cores)", "Memory", "Requests per second", "Latency p99 (s)"} <= titles
    assert "etcd quorum margin (members it can still lose)" in titles
