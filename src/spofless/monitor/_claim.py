"""Alerts sent once for the whole group: each notification is claimed in etcd first.

Every monitor watches everything and decides on its own which notifications
are due. Before one sends a notification it claims it: one etcd key per alert,

    /spofless/<topology>/monitor/<component>/alerts/<alert key>
      {"status": firing|resolved, "fingerprint": ..., "changed_at": t,
       "owner": "monitor/0", "claimed_at": t, "sent_at": t|null}

written by a transaction that holds only if the key is still at the revision
the monitor decided on (compare-and-swap; it decides first on the record it last
read or wrote, and on a failed compare reads the record in the same transaction
and decides again: one call to etcd in the common case). Then it sends, then it
marks the key sent (again guarded by its claim's revision). The rule (`decide`), per case:

- nothing recorded: a firing is claimed; a resolved one is skipped (the group
  never sent it firing);
- the record is what the monitor wants (same status and fingerprint):
  sent -> skipped (a firing one is claimed again after `repeat_interval`);
  claimed by a monitor and not sent -> wait, unless the claim is older than
  `claim_ttl`: then its owner is taken to be dead and the claim is taken over,
  so one dead monitor loses no notification;
- a resolution the group already recorded -> skipped;
- the record is newer news (changed_at later than the monitor's view) ->
  skipped: a monitor that is late to see a change never sends the older state
  again (a firing after the group resolved it);
- otherwise (the monitor has newer news): claimed, once a live claim of the
  previous content has finished, so that a resolution never overtakes its firing.
  A resolution of a firing that never went out is recorded without being sent.

Two monitors that race for the same key both read revision r; one transaction
wins, the other fails its compare and reads the winner's claim on its next
cycle: a notification is never sent twice while its sender lives. A sender
slower than `claim_ttl` (validated to exceed a delivery's worst case) could be
doubled; a sender that dies after sending but before marking it sent is
repeated once by the next claimant (at least once, never lost). Times are the
monitors' wall clocks; claim_ttl must exceed their skew.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from spofless.dcs import Compare, Get, KeyValue, KeyValueStore, Put
from spofless.monitor._alerts import Notification


class Verdict(enum.StrEnum):
    CLAIM = "claim"
    WAIT = "wait"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """The group's record of one alert (the value of its key)."""

    status: Literal["firing", "resolved"]
    fingerprint: str
    changed_at: float
    owner: str
    claimed_at: float
    sent_at: float | None = None
    summary: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClaimRecord | None:
        """The record, or None for a value that is not one (treated as absent)."""
        try:
            data: Any = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class ClaimDecision:
    verdict: Verdict
    reason: str
    send: bool = True  # with CLAIM: False records a resolution that needs no message


def decide(
    record: ClaimRecord | None,
    want: Notification,
    me: str,
    now: float,
    *,
    claim_ttl: float,
    repeat_interval: float,
) -> ClaimDecision:
    """Whether this monitor claims `want` given the group's `record` (see the module)."""
    fingerprint = want.alert.fingerprint
    if record is None:
        if want.status == "resolved":
            return ClaimDecision(Verdict.SKIP, "never notified firing")
        return ClaimDecision(Verdict.CLAIM, "first notification")
    live_claim = record.sent_at is None and now - record.claimed_at < claim_ttl
    if record.status == want.status and record.fingerprint == fingerprint:
        if record.sent_at is not None:
            if want.status == "firing" and now - record.sent_at >= repeat_interval:
                return ClaimDecision(Verdict.CLAIM, "repeat interval passed")
            return ClaimDecision(Verdict.SKIP, f"already sent by {record.owner}")
        if live_claim and record.owner != me:
            return ClaimDecision(Verdict.WAIT, f"claimed by {record.owner}")
        why = "retrying my claim" if record.owner == me else f"{record.owner}'s claim expired"
        return ClaimDecision(Verdict.CLAIM, why)
    if want.status == "resolved" and record.status == "resolved":
        return ClaimDecision(Verdict.SKIP, f"already resolved by {record.owner}")
    if record.changed_at > want.changed_at:
        return ClaimDecision(Verdict.SKIP, f"stale: {record.owner} has newer news")
    if live_claim and record.owner != me:
        return ClaimDecision(Verdict.WAIT, f"{record.owner} is sending the previous state")
    if want.status == "resolved" and record.sent_at is None:
        return ClaimDecision(Verdict.CLAIM, "resolved before any notification", send=False)
    return ClaimDecision(Verdict.CLAIM, "newer state")


def claimed_record(want: Notification, me: str, now: float) -> ClaimRecord:
    return ClaimRecord(
        status=want.status,
        fingerprint=want.alert.fingerprint,
        changed_at=want.changed_at,
        owner=me,
        claimed_at=now,
        summary=want.alert.summary,
    )


class ClaimStore:
    """The claims of one monitor group in a KeyValueStore (the I/O around `decide`)."""

    def __init__(
        self,
        store: KeyValueStore,
        prefix: str,
        me: str,
        *,
        claim_ttl: float,
        repeat_interval: float,
    ) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.me = me
        self.claim_ttl = claim_ttl
        self.repeat_interval = repeat_interval
        # Per key, the record as this monitor last read or wrote it: a guess, checked by
        # the compare of the claim's transaction.
        self._known: dict[str, KeyValue] = {}

    def key(self, want: Notification) -> str:
        return f"{self.prefix}/alerts/{want.alert.key}"

    async def claim(self, want: Notification, now: float) -> tuple[ClaimDecision, int]:
        """Decide on the record and on CLAIM write the claim by compare-and-swap.

        One round trip in the common case: the decision is first taken on the record
        this monitor last read or wrote (none for a key it never saw), and the claim
        is a transaction that puts it if the key is still at that revision, else reads
        it. A decision other than CLAIM, or a failed compare, is taken again on the
        record read fresh. (A linearizable read needs etcd's leader: after the leader
        was killed, it waits out the election like the write; one call, not two.)

        Returns the decision and the claim's revision (0 unless claimed). A lost race
        comes back as WAIT. Raises DCSError when the store does not answer."""
        key = self.key(want)
        kv, fresh = self._known.get(key), False
        while True:
            record = ClaimRecord.from_json(kv.value) if kv is not None else None
            decision = decide(
                record,
                want,
                self.me,
                now,
                claim_ttl=self.claim_ttl,
                repeat_interval=self.repeat_interval,
            )
            if decision.verdict is not Verdict.CLAIM:
                if fresh:
                    return decision, 0
                kv, fresh = await self.store.get(key), True
                self._remember(key, kv)
                continue
            mine = claimed_record(want, self.me, now)
            if not decision.send:
                mine = dataclasses.replace(mine, sent_at=now)
            value = mine.to_json()
            seen = kv.mod_revision if kv is not None else 0
            result = await self.store.txn(
                [Compare.mod_revision(key, "==", seen)], [Put(key, value)], [Get(key)]
            )
            if result.succeeded:
                self._remember(key, KeyValue(key, value, 0, result.revision, 0))
                return decision, result.revision
            got = result.responses[0] if result.responses else ()
            kv = got[0] if got else None
            self._remember(key, kv)
            if fresh:
                return ClaimDecision(Verdict.WAIT, "another monitor claimed it first"), 0
            fresh = True

    def _remember(self, key: str, kv: KeyValue | None) -> None:
        if kv is None:
            self._known.pop(key, None)
        else:
            self._known[key] = kv

    async def mark_sent(self, want: Notification, revision: int, now: float) -> bool:
        """Record that the claim taken at `revision` was sent; False when it was taken over."""
        key = self.key(want)
        done = dataclasses.replace(claimed_record(want, self.me, now), sent_at=now)
        value = done.to_json()
        result = await self.store.txn(
            [Compare.mod_revision(key, "==", revision)], [Put(key, value)]
        )
        if result.succeeded:
            self._remember(key, KeyValue(key, value, 0, result.revision, 0))
        return result.succeeded
