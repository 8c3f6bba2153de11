"""The load balancer: L4 (tcp) and L7 (http/1.1) proxying with health checks and retries.

    settings_from_flags(...) / settings_from_topology(topology, component, index) -> LbSettings
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
    LbConfigError,
    LbSettings,
    RouteSpec,
    settings_from_flags,
    settings_from_topology,
)

__all__ = [
    "Algorithm",
    "BackendSpec",
    "ConsistentHash",
    "LbConfigError",
    "LbSettings",
    "LeastConnections",
    "OutlierPolicy",
    "RetryBudget",
    "RouteSpec",
    "TwoChoices",
    "WeightedRoundRobin",
    "make_algorithm",
    "may_retry",
    "run_lb",
    "settings_from_flags",
    "settings_from_topology",
    "slow_start_factor",
]
