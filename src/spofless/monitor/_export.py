"""For the Prometheus ecosystem: alerting rules and a Grafana dashboard for a topology.

    prometheus_rules(topology) -> dict    a rule file (groups: [{name, rules}]), as data
    grafana_dashboard(topology) -> dict   a dashboard (Grafana's JSON model), as data

Both read the monitor's own `/metrics` (spofless.monitor._http) and the
PostgreSQL agents' (`spofless_pg_*`), so the same conditions the monitor alerts
on can be watched from Prometheus: the live single points of failure (what only
spofless can compute: Prometheus needs the monitor for it), a margin below its
value with everything up, a component down, an instance down, degraded
synchronous replication, replica lag, an etcd cluster's quorum at risk or lost,
a crash loop, a load balancer's CPU near its workers' cores; the dashboard
charts the gauges the monitors record (CPU, memory, requests, latency, lag). Pure.
"""

from __future__ import annotations

from typing import Any

from spofless.topology import (
    EtcdComponent,
    LoadBalancerComponent,
    MonitorComponent,
    PostgresComponent,
    Topology,
)

# Longer than the monitor's look interval and a scrape: a blip is not paged.
FOR_INSTANCE_DOWN = "1m"
# A load balancer busy for this long is short of capacity, not having a spike.
FOR_CPU = "15m"
CPU_SHARE = 0.8


def _job(topology: Topology) -> str:
    return f"spofless-{topology.name}"


def prometheus_rules(topology: Topology) -> dict[str, Any]:
    """The rule file for `topology`; the monitors are scraped as job spofless-<name>."""
    job = _job(topology)
    sel = f'job="{job}"'
    rules: list[dict[str, Any]] = [
        {
            "alert": "SpoflessComponentDown",
            "expr": f"min by (component) (spofless_monitor_margin{{{sel}}}) == 0",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "{{ $labels.component }} is down"},
        },
        {
            "alert": "SpoflessRedundancyLost",
            "expr": (
                f"min by (component) (spofless_monitor_margin{{{sel}}}) > 0 and "
                f"min by (component) (spofless_monitor_margin{{{sel}}}) < "
                f"max by (component) (spofless_monitor_margin_baseline{{{sel}}})"
            ),
            "labels": {"severity": "error"},
            "annotations": {
                "summary": "{{ $labels.component }} can take {{ $value }} more failures "
                "(fewer than with everything up)"
            },
        },
        {
            "alert": "SpoflessLiveSinglePointOfFailure",
            "expr": f"max(spofless_monitor_live_spofs{{{sel}}}) > 0",
            "labels": {"severity": "error"},
            "annotations": {
                "summary": "{{ $value }} element(s) would now take the system down alone: "
                "see spofless_monitor_live_spof"
            },
        },
        {
            "alert": "SpoflessInstanceDown",
            "expr": f"max by (component, index) (spofless_monitor_instance_up{{{sel}}}) == 0",
            "for": FOR_INSTANCE_DOWN,
            "labels": {"severity": "warning"},
            "annotations": {"summary": "{{ $labels.component }}/{{ $labels.index }} is down"},
        },
        {
            "alert": "SpoflessMonitorsDown",
            "expr": f"absent(up{{{sel}}} == 1)",
            "for": FOR_INSTANCE_DOWN,
            "labels": {"severity": "critical"},
            "annotations": {"summary": "no spofless monitor of the topology answers"},
        },
    ]
    if any(isinstance(c, PostgresComponent) for c in topology.components.values()):
        rules += [
            {
                "alert": "SpoflessPostgresSynchronousDegraded",
                "expr": "max by (instance) (spofless_pg_synchronous_degraded) == 1",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "synchronous replication fell back to asynchronous: a "
                    "failover now may lose commits"
                },
            },
            {
                "alert": "SpoflessPostgresReplicaLag",
                "expr": f"spofless_pg_replication_lag_bytes > {_max_lag(topology)}",
                "for": FOR_INSTANCE_DOWN,
                "labels": {"severity": "warning"},
                "annotations": {"summary": "{{ $labels.instance }} lags {{ $value }} bytes"},
            },
        ]
    if any(
        isinstance(c, LoadBalancerComponent) and any(r.backup for r in c.routes)
        for c in topology.components.values()
    ):
        rules.append(
            {
                "alert": "SpoflessRouteOnBackup",
                "expr": "max by (instance, route) (spofless_lb_route_on_backup) == 1",
                "labels": {"severity": "error"},
                "annotations": {
                    "summary": "{{ $labels.instance }}: route {{ $labels.route }} runs on its "
                    "backup backends (every primary is down)"
                },
            }
        )
    rules += _recorded_rules(topology, sel)
    return {"groups": [{"name": f"spofless-{topology.name}", "rules": rules}]}


def _recorded_rules(topology: Topology, sel: str) -> list[dict[str, Any]]:
    """Crash loops, etcd quorum, load balancers' CPU: from what the monitors record."""
    rules: list[dict[str, Any]] = [
        {
            "alert": "SpoflessCrashLoop",
            "expr": f"max by (component, index) (spofless_monitor_crash_loop{{{sel}}}) == 1",
            "labels": {"severity": "error"},
            "annotations": {
                "summary": "{{ $labels.component }}/{{ $labels.index }} keeps being restarted"
            },
        }
    ]
    if any(isinstance(c, EtcdComponent) for c in topology.components.values()):
        margin = f"min by (component) (spofless_monitor_etcd_quorum_margin{{{sel}}})"
        rules += [
            {
                "alert": "SpoflessEtcdQuorumAtRisk",
                "expr": f"{margin} == 0",
                "for": FOR_INSTANCE_DOWN,
                "labels": {"severity": "error"},
                "annotations": {
                    "summary": "{{ $labels.component }}: losing one more member stops etcd"
                },
            },
            {
                "alert": "SpoflessEtcdQuorumLost",
                "expr": f"{margin} < 0",
                "labels": {"severity": "critical"},
                "annotations": {"summary": "{{ $labels.component }} has lost its quorum"},
            },
        ]
    for name, comp in sorted(topology.components.items()):
        if not isinstance(comp, LoadBalancerComponent):
            continue
        cores = comp.workers  # each worker is one single-threaded process
        rules.append(
            {
                "alert": "SpoflessLoadBalancerCpuHigh",
                "expr": (
                    f'max by (component, index) (spofless_monitor_cpu_cores{{{sel},component="'
                    f'{name}"}}) > {CPU_SHARE * cores:g}'
                ),
                "for": FOR_CPU,
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": f"{{{{ $labels.component }}}}/{{{{ $labels.index }}}} uses "
                    f"{{{{ $value }}}} cores of its {cores} worker(s): `spofless trends` "
                    "says when it runs out"
                },
            }
        )
    return rules


def _max_lag(topology: Topology) -> int:
    bounds = [c.max_lag for c in topology.components.values() if isinstance(c, MonitorComponent)]
    return min(bounds) if bounds else MonitorComponent.model_fields["max_lag"].default


def grafana_dashboard(topology: Topology) -> dict[str, Any]:
    """A Grafana dashboard of the monitors' metrics (datasource: the default Prometheus)."""
    sel = f'job="{_job(topology)}"'

    def panel(
        pid: int, title: str, kind: str, expr: str, legend: str, x: int, y: int, w: int, h: int
    ) -> dict[str, Any]:
        return {
            "id": pid,
            "title": title,
            "type": kind,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "targets": [{"expr": expr, "legendFormat": legend, "refId": "A"}],
        }

    panels = [
        panel(1, "Live availability", "stat", f"min(spofless_monitor_availability{{{sel}}})",
              "", 0, 0, 6, 4),
        panel(2, "Live single points of failure", "stat",
              f"max(spofless_monitor_live_spofs{{{sel}}})", "", 6, 0, 6, 4),
        panel(3, "Alerts firing", "stat",
              f"max by (severity) (spofless_monitor_alerts_firing{{{sel}}})", "{{severity}}",
              12, 0, 12, 4),
        panel(4, "Margin per entry component (failures it can still take)", "timeseries",
              f"min by (component) (spofless_monitor_margin{{{sel}}})", "{{component}}",
              0, 4, 12, 8),
        panel(5, "Instances up", "state-timeline",
              f"min by (component, index) (spofless_monitor_instance_up{{{sel}}})",
              "{{component}}/{{index}}", 12, 4, 12, 8),
        panel(6, "Live single points of failure", "table",
              f"max by (element) (spofless_monitor_live_spof{{{sel}}})", "{{element}}",
              0, 12, 24, 6),
        # The gauges the monitors record (any monitor: they measure the same thing).
        panel(7, "CPU (cores)", "timeseries",
              f"max by (component, index) (spofless_monitor_cpu_cores{{{sel}}})",
              "{{component}}/{{index}}", 0, 18, 12, 8),
        panel(8, "Memory", "timeseries",
              f"max by (component, index) (spofless_monitor_memory_bytes{{{sel}}})",
              "{{component}}/{{index}}", 12, 18, 12, 8),
        panel(9, "Requests per second", "timeseries",
              f"max by (component, index) (spofless_monitor_requests_per_second{{{sel}}})",
              "{{component}}/{{index}}", 0, 26, 12, 8),
        panel(10, "Latency p99 (s)", "timeseries",
              f'max by (component, index) (spofless_monitor_latency_seconds{{{sel},'
              'quantile="0.99"})', "{{component}}/{{index}}", 12, 26, 12, 8),
        panel(11, "Replication lag (bytes)", "timeseries",
              f"max by (component, index) (spofless_monitor_replication_lag_bytes{{{sel}}})",
              "{{component}}/{{index}}", 0, 34, 12, 8),
        panel(12, "etcd quorum margin (members it can still lose)", "timeseries",
              f"min by (component) (spofless_monitor_etcd_quorum_margin{{{sel}}})",
              "{{component}}", 12, 34, 12, 8),
        panel(13, "Restarts by the supervisor", "timeseries",
              f"max by (component, index) (spofless_monitor_restarts{{{sel}}})",
              "{{component}}/{{index}}", 0, 42, 24, 6),
    ]  # fmt: skip
    return {
        "title": f"spofless · {topology.name}",
        "uid": f"spofless-{topology.name}"[:40],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "panels": panels,
    }
