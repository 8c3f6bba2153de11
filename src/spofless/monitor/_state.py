"""The live state one monitor keeps: each instance's status, and the events its changes make.

    LiveState(topology, names, fall, rise, damper, max_lag)
    .observe(name, observation, now) -> [Event]   one look at one instance
    .settle(now) -> [Event]                        flapping that ended
    .leaders_seen(now) -> [Event]                  failovers and switchovers (`_leaders`)
    .down() -> frozenset[str]                      the elements down, for the analysis
    .complete                                      every instance looked at at least once

An instance's status follows HAProxy's rule (spofless.health.Detector): `fall`
failed looks in a row make it down, `rise` good ones up again; a refused
connection makes it down at once. A down PostgreSQL member says why: `not
streaming` (a replica that runs but does not stream: down for the analysis,
reported as failed) or `catching up` (cloning, rewinding, recovering: down for
the analysis, reported as catching up, not as failed). A flapping instance is
down for the analysis (`_flap`). A PostgreSQL member also tells its component's
newest restore drill: a newer one that failed is an error event
(`restore_drill_failed`, also the first one this monitor sees), a newer good one
an info event (`restore_drill`). Pure: observations and times are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from spofless.health import Detector, Status
from spofless.monitor._flap import FlapDamper, FlapVerdict
from spofless.monitor._history import Event
from spofless.monitor._leaders import LeaderWatch
from spofless.monitor._probe import Observation
from spofless.monitor._routes import route_events
from spofless.topology import Topology


@dataclass
class InstanceView:
    """What the monitor knows of one instance."""

    name: str
    detector: Detector
    state: str = "unknown"  # up, down, catching up, not streaming, unknown
    detail: str = ""
    since: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    lagging: bool = False
    seen_up: bool = False  # until then it is starting: its changes are not flapping
    backends: dict[str, str] = field(default_factory=dict)  # a load balancer's, by name
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # its routes with backups

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "since": self.since,
            **{k: v for k, v in self.facts.items() if k != "monitor"},
        }


class LiveState:
    def __init__(
        self,
        topology: Topology,
        names: Iterable[str],
        *,
        me: str,
        fall: int,
        rise: int,
        damper: FlapDamper,
        max_lag: int,
    ) -> None:
        self.topology = topology
        self.me = me
        self.views = {n: InstanceView(n, Detector(fall, rise)) for n in names}
        self.damper = damper
        self.max_lag = max_lag
        # Per postgres component: its writable leader, failovers and switchovers.
        self.leaders = LeaderWatch(me)
        self.degraded: dict[str, bool] = {}
        # Per postgres component: when its newest restore drill seen started.
        self.drills: dict[str, float] = {}

    @property
    def complete(self) -> bool:
        return all(v.state != "unknown" for v in self.views.values())

    def down(self) -> frozenset[str]:
        out = set()
        for name, view in self.views.items():
            if view.state not in ("up", "unknown") or self.damper.flapping(name):
                comp, _, index = name.rpartition("/")
                out.add(f"instance:{comp}/{index}")
        return frozenset(out)

    def observe(self, name: str, obs: Observation, now: float) -> list[Event]:
        view = self.views[name]
        view.facts = obs.facts
        events: list[Event] = []
        transition = view.detector.observe(obs.ok, definite=obs.definite, detail=obs.detail)
        old = view.state
        if view.detector.status is Status.UP:
            new = "up"
        elif view.detector.status is Status.DOWN:
            new = obs.state if obs.state != "up" else "down"
            # Between looks that agree it is down, the why may change (catching up).
            new = new if transition is not None or old == "unknown" else _why(old, obs)
        else:
            new = "unknown"
        if new != old:
            view.state, view.detail, view.since = new, obs.detail, now
            events += self._changed(view, old, new, now)
        view.detail = obs.detail
        if obs.facts.get("role") is not None:
            events += self._postgres(name, view, obs, now)
        if "backends" in obs.facts:
            events += self._backends(view, obs.facts["backends"], now)
            events += route_events(view, obs.facts.get("routes") or {}, now, self._event)
        return events

    def _backends(self, view: InstanceView, states: dict[str, str], now: float) -> list[Event]:
        """A load balancer's backends ejected (outlier detection), marked down, back up."""
        events: list[Event] = []
        for backend, state in sorted(states.items()):
            before = view.backends.get(backend)
            if before is None or before == state:
                continue
            if state == "ejected":
                text = f"{view.name} ejected backend {backend} (consecutive failures)"
                events.append(self._event(now, "backend_ejected", view.name, "warning", text))
            elif state == "down":
                text = f"{view.name} marks backend {backend} down"
                events.append(self._event(now, "backend_down", view.name, "warning", text))
            elif state == "up":
                text = f"{view.name} sends to backend {backend} again"
                events.append(self._event(now, "backend_up", view.name, "info", text))
        view.backends = dict(states)
        return events

    def _changed(self, view: InstanceView, old: str, new: str, now: float) -> list[Event]:
        if old == "unknown" and new == "up":
            view.seen_up = True
            return []  # the first look: nothing happened
        # Only a change between up and not up counts towards flapping, not a new why,
        # and not an instance that has not been up yet since this monitor started.
        both_down = old not in ("up", "unknown") and new != "up"
        verdict = (
            FlapVerdict(self.damper.flapping(view.name), False, 0)
            if both_down or not view.seen_up
            else self.damper.changed(view.name, now)
        )
        view.seen_up = view.seen_up or new == "up"
        if verdict.started:
            return [
                self._event(
                    now,
                    "flapping",
                    view.name,
                    "warning",
                    f"{view.name} is flapping: {verdict.changes} changes within "
                    f"{self.damper.window:g}s (down until it settles)",
                    changes=verdict.changes,
                )
            ]
        if verdict.flapping:
            return []
        if new == "up":
            return [self._event(now, "instance_up", view.name, "info", f"{view.name} is up")]
        if new == "catching up":
            text = f"{view.name} is catching up ({view.detail}): not failed"
            return [self._event(now, "catching_up", view.name, "info", text)]
        return [
            self._event(
                now, "instance_down", view.name, "warning", f"{view.name} is {new}: {view.detail}"
            )
        ]

    def settle(self, now: float) -> list[Event]:
        return [
            self._event(
                now,
                "flapping_ended",
                name,
                "info",
                f"{name} stopped flapping: {self.views[name].state}",
            )
            for name in self.damper.settled(now)
        ]

    def _postgres(self, name: str, view: InstanceView, obs: Observation, now: float) -> list[Event]:
        comp = name.rpartition("/")[0]
        events: list[Event] = []
        lag = obs.facts.get("lag")
        lagging = isinstance(lag, int) and lag > self.max_lag and obs.facts.get("role") == "replica"
        if lagging != view.lagging:
            view.lagging = lagging
            text = (
                f"{name} lags {lag} bytes behind its primary (bound {self.max_lag})"
                if lagging
                else f"{name} is within the lag bound again"
            )
            events.append(
                self._event(now, "replica_lag", name, "warning" if lagging else "info", text)
            )
        degraded = bool(obs.facts.get("degraded")) and view.state == "up"
        if obs.facts.get("leader") and degraded != self.degraded.get(comp, False):
            self.degraded[comp] = degraded
            text = (
                f"{comp}: synchronous mode degraded (commits wait for no replica)"
                if degraded
                else f"{comp}: synchronous replication restored"
            )
            events.append(
                self._event(
                    now, "synchronous_degraded", comp, "warning" if degraded else "info", text
                )
            )
        drill = obs.facts.get("restore_drill")
        if isinstance(drill, dict) and isinstance(drill.get("at"), int | float):
            events += self._drill(comp, drill, now)
        return events

    def _drill(self, comp: str, drill: dict[str, Any], now: float) -> list[Event]:
        """A restore drill newer than the last seen (every member reports the same)."""
        at, seen = float(drill["at"]), self.drills.get(comp)
        if seen is not None and at <= seen:
            return []
        self.drills[comp] = at
        if not drill.get("ok"):
            text = (
                f"{comp}: RESTORE DRILL FAILED ({drill.get('failed_phase')}): {drill.get('error')}"
            )
            return [self._event(now, "restore_drill_failed", comp, "error", text, started_at=at)]
        if seen is None:
            return []  # a good drill that ran before this monitor looked: nothing new
        rpo = drill.get("rpo")
        text = f"{comp}: restore drill restored in {float(drill.get('rto') or 0):.1f}s, RPO " + (
            "unknown" if rpo is None else f"{float(rpo):.1f}s"
        )
        return [
            self._event(
                now, "restore_drill", comp, "info", text, started_at=at, rto=drill.get("rto")
            )
        ]

    def leaders_seen(self, now: float) -> list[Event]:
        """Failovers and switchovers: a new writable leader of a postgres component, with
        the write pause at the monitor's resolution (`_leaders`)."""
        current: dict[str, str | None] = {}
        for name, view in self.views.items():
            comp = name.rpartition("/")[0]
            if view.facts.get("role") is None:
                continue
            current.setdefault(comp, None)
            if (
                view.state == "up"
                and view.facts.get("leader")
                and view.facts.get("role") == "primary"
            ):
                current[comp] = name
        return self.leaders.update(current, now)

    def _event(
        self, now: float, kind: str, subject: str, severity: str, message: str, **data: Any
    ) -> Event:
        return Event(now, self.me, kind, subject, severity, message, data)


def _why(old: str, obs: Observation) -> str:
    """A down instance's label when the why changed without a transition."""
    return obs.state if obs.state != "up" else old
