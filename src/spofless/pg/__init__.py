"""PostgreSQL with no single point of failure: the HA agent, its decisions and adapters.

The failover logic is the pure `decide(view) -> Decision` over a frozen `View`;
`spofless.pg.server` is the thin adapter to the local PostgreSQL.
"""

from spofless.pg.decide import decide, format_lsn, parse_lsn
from spofless.pg.view import (
    Action,
    ClusterState,
    Decision,
    LeaderKey,
    Lease,
    LocalState,
    Member,
    Policy,
    Role,
    Switchover,
    SyncState,
    View,
)

__all__ = [
    "Action",
    "ClusterState",
    "Decision",
    "LeaderKey",
    "Lease",
    "LocalState",
    "Member",
    "Policy",
    "Role",
    "Switchover",
    "SyncState",
    "View",
    "decide",
    "format_lsn",
    "parse_lsn",
]
