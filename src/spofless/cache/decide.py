"""The cache shard agent's decision: a pure function of one observed `View`.

Precedence, first match wins (each rule is one `Action` and one sentence):

1. Redis is not running: `start` it, as a replica of the leader when there is one,
   else of nobody (it serves no sync to others until it is promoted).
2. This member holds the shard's lease:
   - Redis is a replica: `promote` (REPLICAOF NO ONE, then accept writes);
   - Redis is a fenced primary: `unfence` (accept writes);
   - else nothing to do: the primary serves.
3. Another member holds the lease (the leader):
   - Redis is a primary: `follow` the leader (fenced first: a demoted primary refuses
     writes before it becomes a replica of the new one);
   - Redis replicates from elsewhere: `follow` the leader;
   - else nothing: a replica of the leader.
4. Nobody holds the lease:
   - Redis is an unfenced primary: `fence` (it lost its lease; writes stop at once);
   - this member is the best candidate (highest replication offset among the running
     members that published one, the lowest name on a tie): `campaign`;
   - else `wait` for a better candidate to take the lease.

A member whose Redis answers no INFO never campaigns (rule 1 restarts it first).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

Role = Literal["primary", "replica"]


class Action(Enum):
    NONE = "none"
    START = "start"
    PROMOTE = "promote"
    UNFENCE = "unfence"
    FENCE = "fence"
    FOLLOW = "follow"
    CAMPAIGN = "campaign"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Member:
    """What a member publishes about itself in etcd (and at its `/status`)."""

    name: str
    host: str
    port: int  # its Redis port
    role: Role | None = None
    offset: int = 0  # Redis's master_repl_offset: how much of the stream it holds
    fenced: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class View:
    """One observation of this member, its Redis and the shard's lease."""

    me: Member  # role None: Redis does not answer
    holds_lease: bool
    leader: Member | None  # the lease holder's record; None when nobody holds the lease
    peers: tuple[Member, ...] = ()  # the other members' latest published records
    replicating_from: str | None = None  # host:port of the primary a replica follows

    @property
    def running(self) -> bool:
        return self.me.role is not None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    target: Member | None = None  # follow: the leader


def best_candidate(members: tuple[Member, ...]) -> Member | None:
    """The running member holding most of the replication stream (lowest name on a tie)."""
    running = [m for m in members if m.role is not None]
    if not running:
        return None
    return min(running, key=lambda m: (-m.offset, m.name))


def decide(view: View) -> Decision:
    """What this member does now; see the module docstring for the precedence."""
    me = view.me
    if not view.running:
        if view.leader is not None and view.leader.name != me.name:
            return Decision(
                Action.START, f"Redis is not running: start it as a replica of {view.leader.name}"
            )
        return Decision(Action.START, "Redis is not running: start it, a replica of nobody")
    if view.holds_lease:
        if me.role == "replica":
            return Decision(Action.PROMOTE, "holds the lease as a replica: promote")
        if me.fenced:
            return Decision(Action.UNFENCE, "holds the lease as a fenced primary: accept writes")
        return Decision(Action.NONE, "primary holding the lease")
    leader = view.leader
    if leader is not None and leader.name != me.name:
        if me.role == "primary":
            return Decision(
                Action.FOLLOW, f"{leader.name} holds the lease: demote, replicate from it", leader
            )
        if view.replicating_from != leader.address:
            return Decision(
                Action.FOLLOW,
                f"replicates from {view.replicating_from or 'nobody'}, leader is {leader.name}",
                leader,
            )
        return Decision(Action.NONE, f"replica of {leader.name}")
    if me.role == "primary" and not me.fenced:
        return Decision(Action.FENCE, "primary without the lease: refuse writes")
    best = best_candidate((me, *view.peers))
    if best is not None and best.name == me.name:
        return Decision(Action.CAMPAIGN, f"no leader; best candidate at offset {me.offset}")
    other = best.name if best is not None else "?"
    return Decision(Action.WAIT, f"no leader; {other} is a better candidate")
