"""The monitor: watches the whole system, re-runs the analysis live, alerts once per group.

live_analysis(topology, down) -> LiveAnalysis    availability, live SPOFs, margins
alerting_path(topology) -> Topology | None       the monitors and their etcd as entry
redundancy_alerts(baseline, live, topology)      the alerts a live state calls for
SeriesStore, daily_peaks                         gauges over time, bounded (`_series`)
component_trends(peaks, topology, ...)           growth and time to capacity (`_trends`)
"""

from spofless.monitor._alerts import (
    Alert,
    AlertBook,
    Notification,
    redundancy_alerts,
    severity_of,
)
from spofless.monitor._claim import ClaimDecision, ClaimRecord, ClaimStore, Verdict, decide
from spofless.monitor._crashloop import CrashLoops
from spofless.monitor._export import grafana_dashboard, prometheus_rules
from spofless.monitor._flap import FlapDamper, FlapVerdict
from spofless.monitor._gauges import GAUGES, GaugeMeter, histogram_quantile, lb_load
from spofless.monitor._history import Event, History, read_events
from spofless.monitor._live import LiveAnalysis, Margin, alerting_path, live_analysis
from spofless.monitor._probe import Observation, Target, probe, targets
from spofless.monitor._quorum import QuorumWatch, quorum_margin
from spofless.monitor._receivers import (
    Group,
    SecretError,
    Sender,
    group_notifications,
    plain_body,
    webhook_body,
)
from spofless.monitor._series import Retention, SeriesStore, daily_peaks, read_meta
from spofless.monitor._service import Monitor, run_monitor
from spofless.monitor._settings import MonitorSettings, history_path, monitor_settings
from spofless.monitor._state import LiveState
from spofless.monitor._trends import Projection, Trend, component_trends, project
from spofless.monitor._trends import render as render_trends

__all__ = [
    "GAUGES",
    "Alert",
    "AlertBook",
    "ClaimDecision",
    "ClaimRecord",
    "ClaimStore",
    "CrashLoops",
    "Event",
    "FlapDamper",
    "FlapVerdict",
    "GaugeMeter",
    "Group",
    "History",
    "LiveAnalysis",
    "LiveState",
    "Margin",
    "Monitor",
    "MonitorSettings",
    "Notification",
    "Observation",
    "Projection",
    "QuorumWatch",
    "Retention",
    "SecretError",
    "Sender",
    "SeriesStore",
    "Target",
    "Trend",
    "Verdict",
    "alerting_path",
    "component_trends",
    "daily_peaks",
    "decide",
    "grafana_dashboard",
    "group_notifications",
    "histogram_quantile",
    "history_path",
    "lb_load",
    "live_analysis",
    "monitor_settings",
    "plain_body",
    "probe",
    "project",
    "prometheus_rules",
    "quorum_margin",
    "read_events",
    "read_meta",
    "redundancy_alerts",
    "render_trends",
    "run_monitor",
    "severity_of",
    "targets",
    "webhook_body",
]
