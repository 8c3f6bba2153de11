"""Cache instances as the stack sees them: role and details from the agent's `/status`.

Like a PostgreSQL instance (`_pg.py`): the supervisor asks each cache agent's API
once a second; `pid` of a cache instance is its Redis's (from the pidfile Redis
writes in the member's data directory, also read while the agent is frozen), the
supervised process, the agent, is `agent_pid`. `describe` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spofless._linux import pid_from_file


@dataclass(frozen=True, slots=True)
class CacheDetails:
    """What `status` shows of one cache instance besides the supervisor's own view."""

    role: str | None  # primary (holds the lease, takes writes), replica, ... or None
    offset: int | None  # its replication offset: how far into the shard's stream it is
    leader: str | None = None  # the member the agent sees as the shard's primary

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "offset": self.offset, "leader": self.leader}


# What a cache instance has besides every instance's keys, when nothing is known.
CACHE_KEYS: dict[str, Any] = {"agent_pid": None, **CacheDetails(None, None).to_json()}


def describe(status: dict[str, Any]) -> CacheDetails:
    """The details of a member from its agent's `/status` JSON (spofless.cache._api).

    `primary` only for the writable lease holder; a Redis in the primary role without
    the lease, or fenced, is `primary, fenced` (it refuses every write); `replica` for
    one whose link to its primary is up, `replica, link down` otherwise (it serves
    stale reads and is left out by the load balancers); None when Redis does not answer.
    """
    role = status.get("role")
    if not status.get("running") or role not in ("primary", "replica"):
        shown = None
    elif role == "primary":
        writable = status.get("leader") is True and status.get("fenced") is False
        shown = "primary" if writable else "primary, fenced"
    else:
        shown = "replica" if status.get("link_up") is True else "replica, link down"
    offset = status.get("offset")
    leader = status.get("leader_name")
    return CacheDetails(
        role=shown,
        offset=offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
        leader=leader if isinstance(leader, str) else None,
    )


def redis_pid(data_dir: Path) -> int | None:
    """The pid of the Redis running in `data_dir`, or None when none runs."""
    from spofless.cache import REDIS_PIDFILE

    return pid_from_file(data_dir / REDIS_PIDFILE, ("redis-server",))
