"""The monitor: watches the whole system, re-runs the analysis live, alerts once per group.

live_analysis(topology, down) -> LiveAnalysis    availability, live SPOFs, margins
alerting_path(topology) -> Topology | None       the monitors and their etcd as entry
redundancy_alerts(baseline, live, topology)      the alerts a live state calls for
"""

from spofless.monitor._alerts import (
    Alert,
    AlertBook,
    Notification,
    redundancy_alerts,
    severity_of,
)
from spofless.monitor._claim import ClaimDecision, ClaimRecord, ClaimStore, Verdict, decide
from spofless.monitor._export import grafana_dashboard, prometheus_rules
from spofless.monitor._flap import FlapDamper, FlapVerdict
from spofless.monitor._history import Event, History, read_events
from spofless.monitor._live import LiveAnalysis, Margin, alerting_path, live_analysis
from spofless.monitor._probe import Observation, Target, probe, targets
from spofless.monitor._receivers import (
    Group,
    SecretError,
    Sender,
    group_notifications,
    plain_body,
    webhook_body,
)
from spofless.monitor._service import (
    Monitor,
    MonitorSettings,
    history_path,
    monitor_settings,
    run_monitor,
)
from spofless.monitor._state import LiveState

__all__ = [
    "Alert",
    "AlertBook",
    "ClaimDecision",
    "ClaimRecord",
    "ClaimStore",
    "Event",
    "FlapDamper",
    "FlapVerdict",
    "Group",
    "History",
    "LiveAnalysis",
    "LiveState",
    "Margin",
    "Monitor",
    "MonitorSettings",
    "Notification",
    "Observation",
    "SecretError",
    "Sender",
    "Target",
    "Verdict",
    "alerting_path",
    "decide",
    "grafana_dashboard",
    "group_notifications",
    "history_path",
    "live_analysis",
    "monitor_settings",
    "plain_body",
    "probe",
    "prometheus_rules",
    "read_events",
    "redundancy_alerts",
    "run_monitor",
    "severity_of",
    "targets",
    "webhook_body",
]
