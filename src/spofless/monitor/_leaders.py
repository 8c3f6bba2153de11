"""Failovers and switchovers of a PostgreSQL component, with the write pause. Pure.

    LeaderWatch(me)
    .requested(component, leader, candidate, now)   the switchover key was written
    .request_ended(component, now)                  the switchover key was deleted
    .update({component: writable leader | None}, now) -> [Event]

The monitor sees a component's writable leader in its agents' /status (the
member that is primary and holds the leader lease). When the leader it sees
changes, from `old` to `new`, one event says how:

    a request naming `old` as leader was seen      switchover  info     planned: the
        (`spofless pg switchover`, the etcd key              old primary handed over
        `<prefix>/switchover` {"leader": old})
    a request with no leader (`spofless pg        failover    warning  requested: true
        failover --to NODE`)
    no request                                     failover    warning  the primary died
                                                                        or was lost

A request counts from when it was seen until the next change of leader, or
REQUEST_GRACE seconds after its key was deleted (the new leader deletes it as
it starts to lead, possibly a look before the monitor sees it lead; a request
withdrawn after its bound made no change and is forgotten). A request naming
another leader than `old` was not honoured by `old` (its agent ignores it):
that change is a failover.

The write pause is measured at the monitor's resolution, from its looks:

    write_pause       from the last look that saw `old` as writable leader to the
                      first look that saw `new` as writable leader: the pause writes
                      had is at most this (writes stopped after the first, resumed
                      before the second)
    no_primary_seen   how long no writable leader was seen at all (from the first look
                      without one; 0 when none was missed): the pause is at least this
                      minus one look interval

The first leader seen is no change. Times are the looks' wall-clock times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from spofless.monitor._history import Event

# How long after its key was deleted a switchover request still explains a new leader.
REQUEST_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class Request:
    """A switchover request seen in etcd (member names as the monitor writes them)."""

    leader: str | None  # None: a manual failover, honoured whoever leads
    candidate: str | None
    seen_at: float
    ended_at: float | None = None


class LeaderWatch:
    def __init__(self, me: str) -> None:
        self.me = me
        self.leaders: dict[str, str] = {}  # per component, the writable leader last seen
        self.last_writable: dict[str, float] = {}  # when it was last seen so
        self.leaderless_since: dict[str, float] = {}
        self.requests: dict[str, Request] = {}

    def requested(
        self, component: str, leader: str | None, candidate: str | None, now: float
    ) -> None:
        self.requests[component] = Request(leader, candidate, now)

    def request_ended(self, component: str, now: float) -> None:
        req = self.requests.get(component)
        if req is not None and req.ended_at is None:
            self.requests[component] = Request(req.leader, req.candidate, req.seen_at, now)

    def update(self, current: Mapping[str, str | None], now: float) -> list[Event]:
        events: list[Event] = []
        for comp, leader in sorted(current.items()):
            self._expire(comp, now)
            if leader is None:
                self.leaderless_since.setdefault(comp, now)
                continue
            before = self.leaders.get(comp)
            since = self.leaderless_since.pop(comp, now)
            if before is not None and before != leader:
                events.append(self._changed(comp, before, leader, since, now))
                self.requests.pop(comp, None)
            self.leaders[comp] = leader
            self.last_writable[comp] = now
        return events

    def _expire(self, comp: str, now: float) -> None:
        req = self.requests.get(comp)
        if req is not None and req.ended_at is not None and now - req.ended_at > REQUEST_GRACE:
            del self.requests[comp]

    def _changed(self, comp: str, old: str, new: str, since: float, now: float) -> Event:
        pause = round(now - self.last_writable.get(comp, now), 3)
        unseen = round(now - since, 3)
        req = self.requests.get(comp)
        data = {
            "old": old,
            "new": new,
            "write_pause": pause,
            "no_primary_seen": unseen,
            "requested": req is not None and req.leader in (None, old),
        }
        seen = f"writes paused at most {pause:.2f}s"
        if unseen:
            seen += f", no writable primary seen for {unseen:.2f}s"
        if req is not None and req.leader == old:
            text = f"{comp}: switchover {old} -> {new} (requested; {seen})"
            return Event(now, self.me, "switchover", comp, "info", text, data)
        why = "requested" if data["requested"] else f"{old} lost"
        text = f"{comp}: failover {old} -> {new} ({why}; {seen})"
        return Event(now, self.me, "failover", comp, "warning", text, data)
