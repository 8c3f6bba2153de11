"""The load balancer: L4 (tcp) and L7 (http/1.1) proxying with health checks and retries.

    lb_settings(topology, component, index) / settings_from_flags(...) -> LbSettings
    run_lb(settings, reload)     run until SIGTERM; SIGHUP calls `reload` for new settings

Architecture: a controller process owns the health view and the admin API and
starts `workers` worker processes that share the port (SO_REUSEPORT); the hot
path is in `_http` (client side), `_upstream` (backend side) and `_tcp`
(asyncio Protocols on uvloop, httptools).
"""

from spofless.lb._algorithms import (
    Algorithm,
    ConsistentHash,
    LeastConnections,
    TwoChoices,
    WeightedRoundRobin,
    make_algorithm,
)
from spofless.lb._controller import run_lb
from spofless.lb._policy import OutlierPolicy, RetryBudget, may_retry, slow_start_factor
from spofless.lb._settings import (
    BackendSpec,
    LbSettings,
    RouteSpec,
    lb_settings,
    settings_from_flags,
)

__all__ = [
    "Algorithm",
    "BackendSpec",
    "ConsistentHash",
    "LbSettings",
    "LeastConnections",
    "OutlierPolicy",
    "RetryBudget",
    "RouteSpec",
    "TwoChoices",
    "WeightedRoundRobin",
    "lb_settings",
    "make_algorithm",
    "may_retry",
    "run_lb",
    "settings_from_flags",
    "slow_start_factor",
]
