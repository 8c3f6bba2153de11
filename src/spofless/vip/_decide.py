"""The VIP agent's pure core: what it knows of the claim in etcd, and what to do next.

`ClaimTracker` folds what the agent reads from etcd (watch events, reads, the
failure branch of a transaction) into two facts, each with the local time it was
learnt (`time.monotonic()`, never a remote clock):

- `claim`: the latest claim known (who, which state, its revisions) and
  `first_seen`, when this agent first saw that claim's latest revision;
- `foreign_seen_at`: the latest time this agent saw evidence that some *other*
  claim might still entitle its holder to the address. Every sighting of a
  foreign claim that is not `released` moves it to the time of the sighting
  (which is after its holder sent it); a `released` claim clears it (its holder
  removed the address before writing it, and it held only after every earlier
  holder had dropped theirs); a read whose history this agent has not seen in
  full (the first read, a key found missing) moves it to the time of the read.

`decide(view)` is the whole hand-over rule as a function; see spofless.vip.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

ClaimState = Literal["pending", "holding", "released"]
NEVER = -math.inf


@dataclass(frozen=True, slots=True)
class Claim:
    """The value of the VIP key: who claims it, and whether it holds the address."""

    instance: str
    state: ClaimState
    token: int = 0  # the key's create revision (the fencing token)
    mod_revision: int = 0  # the revision of the claim's last renewal

    def encode(self) -> str:
        return json.dumps({"instance": self.instance, "state": self.state}, sort_keys=True)

    @classmethod
    def decode(cls, value: str, token: int, mod_revision: int) -> Claim:
        """A claim from the key's value; anything unreadable is a foreign pending claim."""
        try:
            data = json.loads(value)
            instance, state = str(data["instance"]), data["state"]
        except (ValueError, KeyError, TypeError):
            return cls("?", "pending", token, mod_revision)
        if state not in ("pending", "holding", "released"):
            state = "pending"
        return cls(instance, state, token, mod_revision)


class ClaimTracker:
    """What this agent knows of the claim, from everything it read. Pure; times given."""

    def __init__(self, me: str, started_at: float) -> None:
        self.me = me
        self.claim: Claim | None = None
        self.first_seen = started_at
        self.revision = 0  # the store revision the knowledge is as of
        # Until the first read, some unseen holder may have just renewed.
        self.foreign_seen_at = started_at

    def _foreign(self, claim: Claim) -> bool:
        # Claims under this agent's own name never entitle another host: whatever an
        # earlier run of this agent added, this run removed at start.
        return claim.instance != self.me

    def _set(self, claim: Claim | None, now: float) -> None:
        same = (claim is None and self.claim is None) or (
            claim is not None
            and self.claim is not None
            and (claim.token, claim.mod_revision) == (self.claim.token, self.claim.mod_revision)
        )
        if not same:
            self.first_seen = now
        self.claim = claim

    def observe_put(self, claim: Claim, now: float) -> None:
        """A watch event: the key was put (created or renewed); in revision order."""
        if claim.mod_revision <= self.revision:
            return  # already known from a read
        self.revision = claim.mod_revision
        self._set(claim, now)
        if claim.state == "released":
            self.foreign_seen_at = NEVER
        elif self._foreign(claim):
            self.foreign_seen_at = now

    def observe_delete(self, revision: int, now: float) -> None:
        """A watch event: the key was deleted. The claim's last put was seen before it."""
        if revision <= self.revision:
            return
        self.revision = revision
        self._set(None, now)

    def observe_read(self, claim: Claim | None, revision: int, now: float) -> None:
        """A read of the key as of `revision` (a range, or a transaction's Get), whose
        history since the last thing seen is unknown."""
        if revision < self.revision:
            return
        self.revision = revision
        self._set(claim, now)
        if claim is not None and claim.state == "released":
            self.foreign_seen_at = NEVER
        elif claim is None or self._foreign(claim):
            self.foreign_seen_at = now


class Action(StrEnum):
    NOTHING = "nothing"
    CAMPAIGN = "campaign"  # create the key (it is missing)
    DEPOSE = "depose"  # delete a void or released claim (if unchanged), then campaign
    ADD = "add"  # add the address and announce it (gratuitous ARP burst)
    ANNOUNCE = "announce"  # one more gratuitous ARP while holding
    REMOVE = "remove"  # remove the address (not entitled to it)
    RELEASE = "release"  # remove the address, mark the claim released, resign the key


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str


@dataclass(frozen=True, slots=True)
class VipView:
    """A snapshot of everything the agent decides on. Times are local monotonic seconds."""

    me: str
    now: float
    lb_healthy: bool  # this instance's own load balancer passes its check
    address_present: bool  # the address is on this host's interface
    leader: bool  # this agent holds the key (its lease not lost)
    valid_until: float  # last successful renewal sent + hold_time (NEVER: none)
    add_not_before: float  # no earlier may this agent add the address
    claim: Claim | None  # the latest claim known, this agent's own included
    claim_first_seen: float
    announce_at: float  # when the next periodic gratuitous ARP is due
    hold_time: float


def decide(v: VipView) -> Decision:
    """The hand-over rule (spofless.vip): one action and the sentence that explains it."""
    entitled = v.leader and v.now < v.valid_until
    if v.leader and not v.lb_healthy:
        return Decision(Action.RELEASE, "my load balancer is unhealthy: giving the address up")
    if v.address_present and not entitled:
        why = "my claim lapsed" if v.leader else "I do not hold the claim"
        return Decision(Action.REMOVE, f"{why}: removing the address")
    if v.leader:
        if not entitled:
            return Decision(Action.NOTHING, "holder: claim not renewed lately; address down")
        if not v.address_present:
            if v.now >= v.add_not_before:
                return Decision(Action.ADD, "elected and the previous holder is done")
            wait = v.add_not_before - v.now
            return Decision(Action.NOTHING, f"elected; the previous holder may hold {wait:.3f}s")
        if v.now >= v.announce_at:
            return Decision(Action.ANNOUNCE, "holding: periodic gratuitous ARP")
        return Decision(Action.NOTHING, "holding the address")
    if not v.lb_healthy:
        return Decision(Action.NOTHING, "standby: my load balancer is unhealthy")
    c = v.claim
    if c is None:
        return Decision(Action.CAMPAIGN, "no claim: campaigning")
    if c.state == "released":
        return Decision(Action.DEPOSE, f"{c.instance} released the address: taking over")
    if c.instance == v.me:
        return Decision(Action.DEPOSE, "an old claim of mine (no address here): clearing it")
    silent = v.now - v.claim_first_seen
    if silent >= v.hold_time:
        return Decision(
            Action.DEPOSE, f"{c.instance} has not renewed its claim for {silent:.3f}s: deposing"
        )
    return Decision(Action.NOTHING, f"standby: {c.instance} holds the claim ({c.state})")


def add_not_before(tracker: ClaimTracker, won_at: float, hold_time: float, margin: float) -> float:
    """When a new holder that won at `won_at` may add the address: once every earlier
    holder has certainly dropped it (see spofless.vip, rule 3)."""
    return max(won_at, tracker.foreign_seen_at + hold_time + margin)
