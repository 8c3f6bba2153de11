"""PostgreSQL with no single point of failure: the HA agent, its decisions and adapters.

The failover logic is the pure `decide(view) -> Decision` over a frozen `View`;
`spofless.pg.server` is the thin adapter to the local PostgreSQL, in three layers:
reaching it (`_access`: tools, queries, the files spofless owns), its data directory
(`_lifecycle`: initdb, clone, crash recovery, rewind, re-clone) and the running
server (`server`: start, stop, promote, follow).
"""

from spofless.pg.decide import decide
from spofless.pg.view import (
    Action,
    ClusterState,
    Decision,
    DegradedRange,
    DiskPosition,
    LeaderKey,
    Lease,
    LocalState,
    Member,
    Policy,
    Role,
    Switchover,
    SyncState,
    TimelineHistory,
    TimelineSwitch,
    View,
    format_lsn,
    parse_lsn,
)

__all__ = [
    "Action",
    "ClusterState",
    "Decision",
    "DegradedRange",
    "DiskPosition",
    "LeaderKey",
    "Lease",
    "LocalState",
    "Member",
    "Policy",
    "Role",
    "Switchover",
    "SyncState",
    "TimelineHistory",
    "TimelineSwitch",
    "View",
    "decide",
    "format_lsn",
    "parse_lsn",
]
