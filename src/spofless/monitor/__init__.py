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
from spofless.monitor._flap import FlapDamper, FlapVerdict
from spofless.monitor._live import LiveAnalysis, Margin, alerting_path, live_analysis

__all__ = [
    "Alert",
    "AlertBook",
    "ClaimDecision",
    "ClaimRecord",
    "ClaimStore",
    "FlapDamper",
    "FlapVerdict",
    "LiveAnalysis",
    "Margin",
    "Notification",
    "Verdict",
    "alerting_path",
    "decide",
    "live_analysis",
    "redundancy_alerts",
    "severity_of",
]
