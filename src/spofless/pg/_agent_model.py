"""The agent's settings and the state it publishes: plain data and pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from spofless.dcs import DCSSettings
from spofless.pg._server_model import ServerSettings
from spofless.pg.view import Action, Decision, LocalState, Policy, Role

__all__ = ["AgentSettings", "state_of"]

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
    # The state directory where restore drills of `component` are recorded
    # (spofless.backup): the API serves the newest at /status and /metrics. None:
    # the component has no backups.
    backup_state_dir: Path | None = None
    component: str = ""

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
