"""What a supervisor learns of its instances' roles, for the state file and `status`.

- etcd members: `leader` / `follower`, asked of each healthy member once a second;
- PostgreSQL and cache instances: what their agent's API says (role and details) and
  the pid of the server the agent runs (what a fault is aimed at);
- load balancers with a floating address and their VIP agents: `vip-holder`,
  `holder` / `standby`, from the claim in etcd (spofless.stack._vip.follow_claim).

Every change calls `changed` (the supervisor writes its state file then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spofless.pg import postmaster_pid
from spofless.stack import _cache, _pg
from spofless.stack._plan import InstancePlan, pg_data_dir
from spofless.stack._vip import of_vip

logger = logging.getLogger(__name__)

__all__ = ["Roles"]


class Roles:
    def __init__(self, state_dir: Path, changed: Callable[[], None]) -> None:
        self.state_dir = state_dir
        self._changed = changed
        self.members: dict[str, str | None] = {}  # etcd members: leader / follower
        self._agents: dict[str, _pg.PgDetails | _cache.CacheDetails] = {}
        self._servers: dict[str, int | None] = {}
        self._vip: dict[str, str] = {}  # VIP agents and load balancers, from the claim

    def role(self, name: str) -> str | None:
        return self.members.get(name) or self._vip.get(name)

    def leaders(self) -> set[str]:
        return {n for n, r in self.members.items() if r == "leader"}

    async def observe_agent(self, inst: InstancePlan) -> None:
        """A postgres or cache instance: its agent's view (role, ...) and its server's pid."""
        body = await _pg.agent_json(inst.bind_ip, inst.health_port)
        data_dir = pg_data_dir(self.state_dir, inst)  # the layout both agents use
        details: _pg.PgDetails | _cache.CacheDetails | None
        if inst.kind == "postgres":
            details = _pg.describe(body) if body is not None else None
            pid = postmaster_pid(data_dir)
        else:
            details = _cache.describe(body) if body is not None else None
            pid = _cache.redis_pid(data_dir)
        if details is None:
            if self._agents.pop(inst.name, None) is not None:
                self._changed()
        elif self._agents.get(inst.name) != details:
            if inst.name in self._agents and details.role != self._agents[inst.name].role:
                logger.info("%s: now %s", inst.name, details.role or "without a role")
            self._agents[inst.name] = details
            self._changed()
        if self._servers.get(inst.name) != pid:
            self._servers[inst.name] = pid
            self._changed()

    def forget_agent(self, name: str) -> None:
        if self._agents.pop(name, None) is not None or self._servers.pop(name, None):
            self._changed()

    def vip_seen(self, lb: str, roles: dict[str, str]) -> None:
        """The roles of `lb`'s instances and VIP agents, from its claim."""
        others = {n: r for n, r in self._vip.items() if not of_vip(n, lb)}
        new = {**others, **roles}
        if new != self._vip:
            holder = [n for n, r in roles.items() if r == "vip-holder"]
            logger.info("%s: the floating address is held by %s", lb, holder or "nobody")
            self._vip = new
            self._changed()

    def agent_doc(self, inst: InstancePlan, live: bool, agent_pid: int | None) -> dict[str, Any]:
        """A postgres or cache instance's entries in the state file: `pid` is its
        server's (PostgreSQL's or Redis's), `agent_pid` its agent's, and the role and
        details are what the agent says."""
        details = self._agents.get(inst.name) if live else None
        if details is None:
            empty = _pg.PgDetails(None, None, None, None, None)
            details = empty if inst.kind == "postgres" else _cache.CacheDetails(None, None)
        return {
            "pid": self._servers.get(inst.name) if live else None,
            "agent_pid": agent_pid,
            **details.to_json(),
        }
