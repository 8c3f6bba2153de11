"""etcd quorum: members lost and how many more the cluster can lose. Pure.

    quorum_margin(members, up) -> int
    QuorumWatch(me, topology).update(states, now) -> [Event]
    .alerts() -> {key: Alert}     one EtcdQuorumAtRisk alert per cluster at risk or lost

An etcd cluster of n members keeps its quorum while floor(n/2)+1 of them are
up; its margin is how many more members it can lose: up - quorum. Each etcd
component of the topology is at one level, and a change of level is one event:

    margin n - quorum (all up)     full
    0 < margin < n - quorum        etcd_member_lost     warning   "can lose 1 more"
    margin 0                       etcd_quorum_at_risk  error     one more loss stops it
    margin < 0                     etcd_quorum_lost     critical  no writes, no elections
    back to a better level         etcd_quorum_resolved info      (what the level is now)

A member is up when the monitor sees it up (it answers its own status) and is
not flapping (a flapping member is down, as for the analysis). Nothing
is said before every member was looked at once (the monitor's first looks), so a
monitor that starts does not report members it has not reached yet.

A cluster at risk or lost is also an alert for the receivers, one per etcd
component (`quorum/<component>`, alertname `EtcdQuorumAtRisk`): `error` at risk,
`critical` lost, naming the members lost (`down`) and the members whose loss
would now stop it (`live_spofs`, at risk); its margin is the quorum margin, its
baseline the margin with every member up. It is sent once for the group through
the claims (`_claim`), again when the members lost change, and resolved once the
cluster can lose a member again. A member lost with margin to spare makes no
alert of its own: the redundancy alert of what depends on etcd says it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from spofless.monitor._alerts import Alert
from spofless.monitor._history import Event
from spofless.topology import EtcdComponent, Topology


def quorum_margin(members: int, up: int) -> int:
    """How many more members a cluster of `members` with `up` up can lose and keep quorum."""
    return up - (members // 2 + 1)


@dataclass(frozen=True, slots=True)
class QuorumLevel:
    members: int
    up: int
    down: tuple[str, ...]

    @property
    def margin(self) -> int:
        return quorum_margin(self.members, self.up)

    @property
    def rank(self) -> int:
        """0 full, 1 a member lost, 2 at risk, 3 lost: higher is worse."""
        full = quorum_margin(self.members, self.members)
        if self.margin >= full:
            return 0
        if self.margin > 0:
            return 1
        return 2 if self.margin == 0 else 3


_KINDS = {
    1: ("etcd_member_lost", "warning"),
    2: ("etcd_quorum_at_risk", "error"),
    3: ("etcd_quorum_lost", "critical"),
}


class QuorumWatch:
    def __init__(self, me: str, topology: Topology) -> None:
        self.me = me
        self.clusters = {
            name: [i.name for i in topology.instances[name]]
            for name, comp in topology.components.items()
            if isinstance(comp, EtcdComponent)
        }
        self.levels: dict[str, QuorumLevel] = {}

    def update(self, states: Mapping[str, str], now: float) -> list[Event]:
        """`states`: the monitor's state of each instance it looks at (up, down, unknown...)."""
        events: list[Event] = []
        for comp, members in self.clusters.items():
            seen = [states[m] for m in members if m in states]
            if len(seen) < len(members) or "unknown" in seen:
                continue  # not every member looked at yet (or this monitor is not on it)
            down = tuple(m for m in members if states[m] != "up")
            level = QuorumLevel(len(members), len(members) - len(down), down)
            before = self.levels.get(comp)
            self.levels[comp] = level
            rank_before = before.rank if before is not None else 0
            if level.rank == rank_before:
                continue
            events.append(self._event(now, comp, level, better=level.rank < rank_before))
        return events

    def alerts(self) -> dict[str, Alert]:
        out: dict[str, Alert] = {}
        for comp, level in sorted(self.levels.items()):
            if level.rank < 2:
                continue
            key = f"quorum/{comp}"
            up = [m for m in self.clusters[comp] if m not in level.down]
            out[key] = Alert(
                key=key,
                alertname="EtcdQuorumAtRisk",
                component=comp,
                severity="error" if level.rank == 2 else "critical",
                summary=_text(comp, level),
                margin=level.margin,
                baseline=quorum_margin(level.members, level.members),
                down=tuple(f"instance:{m}" for m in level.down),
                cuts=tuple((f"instance:{m}",) for m in up) if level.rank == 2 else (),
            )
        return out

    def _event(self, now: float, comp: str, level: QuorumLevel, better: bool) -> Event:
        lost = ", ".join(level.down)
        text = _text(comp, level)
        if level.rank == 0:
            kind, severity = "etcd_quorum_resolved", "info"
        else:
            kind, severity = _KINDS[level.rank]
            if better:
                kind, severity = "etcd_quorum_resolved", "info"
        return Event(
            now,
            self.me,
            kind,
            comp,
            severity,
            text,
            {"members": level.members, "up": level.up, "margin": level.margin, "down": lost},
        )


def _text(comp: str, level: QuorumLevel) -> str:
    lost = ", ".join(level.down)
    head = f"{comp}: {level.up} of {level.members} members up"
    if level.rank == 0:
        return f"{comp}: all {level.members} members up again"
    if level.rank == 1:
        return f"{head} ({lost} lost): it can lose {level.margin} more and keep its quorum"
    if level.rank == 2:
        return f"{head} ({lost} lost): quorum at risk, losing one more stops it"
    return f"{head} ({lost} lost): quorum lost, no writes and no leader election"
