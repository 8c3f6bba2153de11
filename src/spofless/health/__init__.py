"""Health checks and the up/down detector, shared by every runtime part.

    run_check(spec, host, port) -> CheckResult   one active check (tcp, http, command, postgres;
                                                 http over TLS given an ssl context)
    Detector(fall, rise)                          pure up/down state machine over results
    HealthMonitor(targets, spec, on_change)       periodic checks + passive observations

The check spec is `spofless.topology.HealthCheck`. Its defaults (interval
0.25 s, timeout 0.25 s, fall 2, rise 2) detect a silent instance within
about 0.75 s; a refused or reset connection marks an instance down at once.
"""

from spofless.health._checks import (
    CHECKERS,
    Checker,
    CheckResult,
    check_command,
    check_http,
    check_postgres,
    check_tcp,
    connect_failure,
    run_check,
)
from spofless.health._detector import Detector, Status, Transition
from spofless.health._monitor import HealthMonitor, OnChange, Target, TargetHealth

__all__ = [
    "CHECKERS",
    "CheckResult",
    "Checker",
    "Detector",
    "HealthMonitor",
    "OnChange",
    "Status",
    "Target",
    "TargetHealth",
    "Transition",
    "check_command",
    "check_http",
    "check_postgres",
    "check_tcp",
    "connect_failure",
    "run_check",
]
