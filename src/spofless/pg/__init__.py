"""PostgreSQL with no single point of failure: the HA agent, its decisions and adapters.

The failover logic is the pure `decide(view) -> Decision` over a frozen `View`;
A topology's postgres instance becomes an agent's settings through
`agent_settings` (spofless.pg._from_topology); `Agent` runs it;
`spofless.pg.server` is the thin adapter to the local PostgreSQL, in three layers:
reaching it (`_access`: tools, queries, the files spofless owns), its data directory
(`_lifecycle`: initdb, clone, crash recovery, rewind, re-clone) and the running
server (`server`: start, stop, promote, follow).
"""

from spofless.pg._datadir import clone_only_mark, postmaster_pid
from spofless.pg._from_topology import (
    agent_settings,
    archive_settings,
    dcs_settings,
    default_state_dir,
    etcd_endpoints,
    uses_wal_relay,
    wal_relay,
)
from spofless.pg.agent import Agent, AgentSettings
from spofless.pg.decide import decide
from spofless.pg.server import PostgresServer, ServerSettings, Upstream, slot_name
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
    "Agent",
    "AgentSettings",
    "ClusterState",
    "Decision",
    "DegradedRange",
    "DiskPosition",
    "LeaderKey",
    "Lease",
    "LocalState",
    "Member",
    "Policy",
    "PostgresServer",
    "Role",
    "ServerSettings",
    "Switchover",
    "SyncState",
    "TimelineHistory",
    "TimelineSwitch",
    "Upstream",
    "View",
    "agent_settings",
    "archive_settings",
    "clone_only_mark",
    "dcs_settings",
    "decide",
    "default_state_dir",
    "etcd_endpoints",
    "format_lsn",
    "parse_lsn",
    "postmaster_pid",
    "slot_name",
    "uses_wal_relay",
    "wal_relay",
]
