"""The agent's settings and the state it publishes: plain data and pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from spofless.dcs import DCSSettings
from spofless.pg._server_model import ServerSettings
from spofless.pg.api import MemberStatus
from spofless.pg.view import Action, Decision, LocalState, Policy, Role, View

__all__ = ["AgentSettings", "RegionSettings", "member_status", "state_of"]

# Actions that take long: the member says what it does before it starts.
LONG_ACTIONS = frozenset(
    {Action.BOOTSTRAP, Action.CLONE, Action.REWIND, Action.RECLONE, Action.RECOVER}
)
_BUSY = {
    Action.BOOTSTRAP: "bootstrapping",
    Action.CLONE: "cloning",
    Action.REWIND: "rewinding",
    Action.RECLONE: "re-cloning",
    Action.RECOVER: "recovering",
}


class RegionSettings(BaseModel):
    """The group's region lease in its quorum etcd (spofless.pg._region)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: tuple[str, ...]  # the quorum etcd's client URLs
    prefix: str  # R, spofless.pg._region.region_prefix
    ttl: Annotated[int, Field(ge=2, le=3600)]
    # This cluster promotes itself when it is a standby and the region lease expired.
    auto_promote: bool = False

    @property
    def margin(self) -> float:
        """A primary stops writes when less than this is left of its region lease: a third
        of the ttl, the time its fast shutdown has before etcd can drop the key."""
        return self.ttl / 3


class AgentSettings(BaseModel):
    """One agent: its member, its cluster's prefix, its API, the failover policy, timings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str  # e.g. /spofless/<topology>/<component>
    server: ServerSettings
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=0, le=65535)] = 0
    synchronous: bool = False
    strict: bool = False
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = 1024 * 1024
    allow_reclone: bool = False
    # Diverged data directories kept aside by re-clones (never deleted by spofless).
    keep_old_data: Annotated[int, Field(ge=1)] = 2
    loop_wait: Annotated[float, Field(gt=0)] = 0.5
    # Commits wait for a witness in this agent that acknowledges only while the lease is
    # valid (spofless.pg.witness): a primary frozen past the ttl cannot acknowledge a
    # commit when it wakes. Off only to measure what it costs.
    fence_witness: bool = True
    dcs: DCSSettings = DCSSettings(ttl=3, renew_interval=0.5, retry_timeout=0.5)
    # Standby clusters (spofless.pg._standby). `cluster`: this member's cluster (its
    # postgres component); `standby_of`: the cluster it copies unless etcd says otherwise
    # (P/standby); `peers`: the other clusters of its group, each with its members'
    # (host, port), for the read-write route to follow and the slots to keep for them.
    cluster: str | None = None
    standby_of: str | None = None
    peers: Mapping[str, tuple[tuple[str, int], ...]] = Field(default_factory=dict)
    # Each peer cluster's etcd endpoints and key prefix: which of them says it is primary.
    peer_etcd: Mapping[str, tuple[tuple[str, ...], str]] = Field(default_factory=dict)
    # The group's region lease (`auto_promote` on a cluster of the group); None: none.
    region: RegionSettings | None = None
    # The state directory where restore drills of `component` are recorded
    # (spofless.backup): the API serves the newest at /status and /metrics. None:
    # the component has no backups.
    backup_state_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.server.name

    def policy(self) -> Policy:
        return Policy(
            synchronous=self.synchronous,
            strict=self.strict,
            maximum_lag_on_failover=self.maximum_lag_on_failover,
            allow_reclone=self.allow_reclone,
            # As long as a lease lasts: a leader does not give the lease up for a status
            # query or two that a loaded machine answered late.
            unanswered_bound=max(2 * self.loop_wait, float(self.dcs.ttl)),
        )


def state_of(local: LocalState, d: Decision | None, busy: Action | None) -> tuple[str, str | None]:
    """The one-word state a member publishes, and why it is not doing its job."""
    if busy is not None:
        return _BUSY[busy], d.reason if d else None
    if d is not None and d.failed:
        return "failed", d.reason
    if not local.running:
        return "stopped", d.reason if d else None
    if local.role is Role.REPLICA and not local.streaming:
        return "not streaming", d.reason if d else None
    if local.role is Role.REPLICA:
        return "streaming", None
    return "running", None


def member_status(
    settings: AgentSettings, view: View, d: Decision | None, busy: Action | None, api_port: int
) -> MemberStatus:
    """What the member publishes (in etcd, at /status) after a loop that decided `d`."""
    local, s = view.local, settings.server
    lag = None
    if view.cluster and view.cluster.leader_wal_position and local.wal_position:
        lag = max(0, view.cluster.leader_wal_position - local.wal_position)
    state, reason = state_of(local, d, busy)
    return MemberStatus(
        name=settings.name,
        running=local.running,
        role=local.role,
        leader=view.lease.held,
        timeline=local.timeline,
        wal_position=local.wal_position,
        lag=0 if local.role is Role.PRIMARY else lag,
        streaming=local.streaming,
        state=state,
        api_url=f"http://{settings.api_host}:{api_port}",
        dsn=f"host={s.host} port={s.port} user=postgres dbname=postgres",
        host=s.host,
        port=s.port,
        reason=reason,
        not_streaming_for=(
            round(local.not_streaming_for, 1)
            if local.running and local.role is Role.REPLICA and not local.streaming
            else None
        ),
    )
