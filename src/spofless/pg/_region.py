"""The region lease of a group of clusters with `auto_promote`: the pure rules.

A group (a primary cluster and its standby clusters, `standby_of`, each in its own
region with its own etcd) may promote a standby cluster by itself when the primary
region is gone. Who is primary is then decided in a third etcd, the *quorum*, with
members in three regions or more: the side of a partition that holds its majority
decides, the other side cannot write there. Its keys, under R (`region_prefix`):

    R/owner   {"cluster": c, "epoch": n}   persistent: cluster c is primary since epoch n
    R/lease   {"cluster": c, "epoch": n}   on the holder's etcd lease (ttl): c is alive

The rules, each a test:

1. Holding. The leader of the primary cluster refreshes R/lease every loop: a
   keep-alive of its etcd lease, and R/lease names its cluster on that lease (re-put
   when not, guarded by R/owner unchanged). It holds the region until the *start* of
   the last successful keep-alive plus the ttl, by its own monotonic clock; etcd keeps
   the key at least that long (a lease expires ttl after the keep-alive *reached* it).
2. Without it, no write. While the region lease is not valid the fence witness
   acknowledges nothing (commits wait, never acknowledged: spofless.pg.witness); once
   less than `margin` (a third of the ttl) is left the leader stops PostgreSQL (fast
   shutdown, it keeps its cluster's leader lease) so that it is read-only before etcd
   can drop the key; it starts or promotes a primary only while it holds the region.
3. Taking over. The leader of a standby cluster with `auto_promote`, running, finds
   R/lease absent (etcd expired it: the old holder's own deadline has passed) while
   R/owner names another cluster: in one transaction (R/lease still absent, R/owner
   unchanged) it writes R/owner = its cluster at a newer epoch and R/lease on its own
   lease. A side without the quorum's majority cannot write: it never promotes.
4. The owner is the truth. R/owner newer (higher epoch) than what a cluster's own etcd
   says (`P/standby`) is adopted: the new owner becomes the primary cluster and
   promotes; every other cluster becomes its standby, its old primary rejoining
   through pg_rewind (spofless.pg._standby).
5. First start. Without R/owner the primary cluster's leader creates it (and R/lease)
   at its epoch; a standby never does (it would promote a copy nobody wrote to).
6. `spofless pg promote-region` writes R/owner (the new cluster, its epoch) and deletes
   R/lease, so that the old cluster does not take the region back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


def region_prefix(topology_name: str, root: str) -> str:
    """R: the group's keys in the quorum etcd (`root`: the group's primary cluster in the
    topology, so every cluster of the group agrees on it whoever is primary now)."""
    return f"/spofless/{topology_name}/{root}/region"


@dataclass(frozen=True, slots=True)
class Claim:
    """The value of R/owner or R/lease: a cluster and its epoch."""

    cluster: str
    epoch: int

    def to_json(self) -> str:
        return json.dumps({"cluster": self.cluster, "epoch": self.epoch})

    @classmethod
    def parse(cls, text: str) -> Claim | None:
        """The claim in `text`, None when it does not parse."""
        try:
            d = json.loads(text)
            return cls(str(d["cluster"]), int(d["epoch"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class Mode(StrEnum):
    """What this agent does with the region lease now (set by the agent each loop)."""

    IDLE = "idle"  # not a leader, or a standby cluster without auto_promote
    HOLD = "hold"  # the leader of the primary cluster: hold R/lease
    TAKE = "take"  # the running leader of a standby cluster with auto_promote: watch R/lease


class Step(StrEnum):
    WAIT = "wait"  # nothing to write
    CREATE = "create"  # first start: R/owner and R/lease for my cluster
    REFRESH = "refresh"  # R/lease on my lease, naming my cluster
    TAKE = "take"  # the owner's region lease expired: take the region for my cluster


def region_step(
    cluster: str, mode: Mode, epoch: int, owner: Claim | None, lease: Claim | None
) -> tuple[Step, str]:
    """What this round writes in the quorum, and why (rules 1, 3, 5)."""
    if mode is Mode.IDLE:
        return Step.WAIT, "not holding nor watching the region"
    if owner is None:
        if mode is Mode.HOLD:
            return Step.CREATE, f"no cluster owns the region yet: {cluster} (epoch {epoch})"
        return Step.WAIT, "no cluster owns the region yet: a standby never takes it first"
    if owner.cluster == cluster:
        if mode is Mode.HOLD:
            return Step.REFRESH, f"{cluster} owns the region (epoch {owner.epoch})"
        return Step.WAIT, f"{cluster} owns the region: it becomes the primary cluster"
    if mode is Mode.HOLD:
        return Step.WAIT, f"{owner.cluster} owns the region (epoch {owner.epoch}), not {cluster}"
    if lease is not None:
        return Step.WAIT, f"{lease.cluster} holds the region lease"
    new = max(owner.epoch, epoch) + 1
    return (
        Step.TAKE,
        f"{owner.cluster}'s region lease expired in the quorum: taking the region for "
        f"{cluster} (epoch {new})",
    )


def adopt(cluster: str, standby_epoch: int, owner: Claim | None) -> tuple[str | None, int] | None:
    """Rule 4: (standby_of, epoch) this cluster's own etcd should say, when the quorum's
    owner is newer than it (None: nothing to change)."""
    if owner is None or owner.epoch <= standby_epoch:
        return None
    return (None if owner.cluster == cluster else owner.cluster), owner.epoch


@dataclass(frozen=True, slots=True)
class RegionView:
    """The region lease as one agent loop sees it (View.region; None: no auto_promote)."""

    valid_for: float = 0.0  # seconds this member still holds the region lease
    # Seconds since this member started to hold (Mode.HOLD) without a break in wanting.
    wanted_for: float = 0.0
    margin: float = 1.0  # below this validity a primary stops writes (rule 2)
    owner: Claim | None = None  # R/owner as last read (None: unknown or absent)
    cluster: str = ""  # this member's cluster

    @property
    def held(self) -> bool:
        """Held with time to spare: a primary may start, promote, keep writing."""
        return self.valid_for > self.margin

    @property
    def lost(self) -> bool:
        """A running primary must stop writes: the margin is reached, or it never got the
        lease within the margin of wanting it (a quorum it cannot reach)."""
        return not self.held and self.wanted_for >= self.margin

    def why_not(self) -> str:
        """Why the region lease is not held, in words."""
        if self.owner is not None and self.owner.cluster != self.cluster:
            return f"{self.owner.cluster} owns the region (epoch {self.owner.epoch})"
        if self.valid_for > 0:
            return f"the region lease has {self.valid_for:.1f}s left (< {self.margin:.1f}s)"
        return "the region lease is not held (the quorum etcd is not reached)"


__all__ = ["Claim", "Mode", "RegionView", "Step", "adopt", "region_prefix", "region_step"]
