"""Crash loops: an instance its supervisor keeps restarting. Pure.

    CrashLoops(me, restarts, window).observe(name, supervised, now) -> [Event]
    .alerts() -> {key: Alert}       one CrashLoop alert per instance in a crash loop

The supervisor counts each instance's restarts (`spofless status` shows them).
An instance restarted `restarts` times within `window` seconds is in a crash
loop: one `crash_loop` event says so, with the count and the last exit; its
further restarts make no event. When the supervisor gives up (its own crash-loop
rule marks the instance `failed`), one more event says that nothing restarts
it any more. The loop is over once the instance is up and a whole `window`
passed without a restart (`crash_loop_ended`).

    the first look at an instance       its count is the baseline, nothing happened
                                        (one already `failed` is reported at once)
    the count went down                 the stack was started again: a new baseline
    the instance left the state file    forgotten (the stack was stopped)

An instance in a crash loop is also an alert for the receivers, one per
instance (`crashloop/<component>/<i>`, alertname `CrashLoop`, severity `error`,
`critical` once its supervisor gave up), sent once for the group through the
claims (`_claim`) and resolved with `crash_loop_ended` (or when it left the
state file). Its summary is the event's sentence; it has no margin (0), and it
is not notified again as the restarts go on (only the severity is in its
fingerprint, with the instance).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from spofless.monitor._alerts import Alert
from spofless.monitor._history import Event
from spofless.monitor._procs import Supervised


@dataclass
class _Seen:
    restarts: int
    times: deque[float] = field(default_factory=deque)
    looping: bool = False
    gave_up: bool = False
    summary: str = ""  # the sentence of the last crash_loop event


class CrashLoops:
    def __init__(self, me: str, restarts: int, window: float) -> None:
        self.me = me
        self.restarts = restarts
        self.window = window
        self._seen: dict[str, _Seen] = {}

    def looping(self, name: str) -> bool:
        seen = self._seen.get(name)
        return seen is not None and seen.looping

    def alerts(self) -> dict[str, Alert]:
        out: dict[str, Alert] = {}
        for name, seen in sorted(self._seen.items()):
            if not seen.looping:
                continue
            key = f"crashloop/{name}"
            out[key] = Alert(
                key=key,
                alertname="CrashLoop",
                component=name.rpartition("/")[0],
                severity="critical" if seen.gave_up else "error",
                summary=seen.summary,
                margin=0,
                baseline=0,
                down=(f"instance:{name}",),
                cuts=(),
            )
        return out

    def observe_all(self, instances: dict[str, Supervised], now: float) -> list[Event]:
        events: list[Event] = []
        for name in sorted(instances):
            events += self.observe(name, instances[name], now)
        for name in [n for n in self._seen if n not in instances]:
            del self._seen[name]
        return events

    def observe(self, name: str, sup: Supervised, now: float) -> list[Event]:
        seen = self._seen.get(name)
        if seen is None or sup.restarts < seen.restarts:
            seen = self._seen[name] = _Seen(sup.restarts)
        events: list[Event] = []
        for _ in range(sup.restarts - seen.restarts):
            seen.times.append(now)
        seen.restarts = sup.restarts
        while seen.times and seen.times[0] <= now - self.window:
            seen.times.popleft()
        exit_ = f" (last exit: {sup.last_exit})" if sup.last_exit else ""
        if not seen.looping and len(seen.times) >= self.restarts:
            seen.looping = True
            events.append(
                self._event(
                    now,
                    "crash_loop",
                    name,
                    "error",
                    f"{name} is in a crash loop: restarted {len(seen.times)} times within "
                    f"{self.window:g}s{exit_}",
                    restarts=len(seen.times),
                )
            )
        if events:
            seen.summary = events[-1].message
        if sup.state == "failed" and not seen.gave_up:
            seen.gave_up = seen.looping = True
            events.append(
                self._event(
                    now,
                    "crash_loop",
                    name,
                    "critical",
                    f"{name}: its supervisor stopped restarting it after a crash loop{exit_}: "
                    "`spofless up` again once the cause is fixed",
                    restarts=sup.restarts,
                    gave_up=True,
                )
            )
            seen.summary = events[-1].message
        elif seen.looping and not seen.times and sup.state == "up":
            seen.looping = seen.gave_up = False
            events.append(
                self._event(
                    now,
                    "crash_loop_ended",
                    name,
                    "info",
                    f"{name} has run {self.window:g}s without a restart: the crash loop is over",
                )
            )
        return events

    def _event(
        self, now: float, kind: str, subject: str, severity: str, message: str, **data: object
    ) -> Event:
        return Event(now, self.me, kind, subject, severity, message, dict(data))
