"""Alerts from the live analysis: one per entry component whose redundancy shrank.

    redundancy_alerts(baseline, live, topology) -> {key: Alert}
    AlertBook.update(alerts, now) -> [Notification]   what changed since the last call

An entry component's alert fires while its margin (more failures it takes to go
down, see `_live`) is below the margin it has with everything up, and names
the elements whose loss would now take it down:

    "etcd/1 is down: losing etcd/0 or etcd/2 now takes web down"

Severity comes from the margin, not from a rule per kind:

    margin 0   critical   the component is down
    margin 1   error      one more failure takes it down (a live single point of failure)
    margin 2+  warning    redundancy shrank but more than one failure is still needed

A firing alert is notified again when its content changes (another element
went down, the severity moved); it resolves when the margin is back. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from spofless.monitor._live import LiveAnalysis
from spofless.topology import Topology

Severity = Literal["critical", "error", "warning"]
# How many cut sets a message names before it says "and N more".
MAX_NAMED = 6


def severity_of(margin: int) -> Severity:
    if margin <= 0:
        return "critical"
    return "error" if margin == 1 else "warning"


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing alert, as the group agrees on it: same state, same fingerprint."""

    key: str  # "redundancy/<component>"
    alertname: str  # ComponentDown | RedundancyLost
    component: str
    severity: Severity
    summary: str
    margin: int
    baseline: int
    down: tuple[str, ...]  # the down elements that concern this component
    cuts: tuple[tuple[str, ...], ...]  # what would now take it down

    @property
    def labels(self) -> dict[str, str]:
        return {
            "alertname": self.alertname,
            "component": self.component,
            "severity": self.severity,
        }

    @property
    def fingerprint(self) -> str:
        """Same content, same fingerprint, on every monitor."""
        content = [self.key, self.severity, list(self.down), [list(c) for c in self.cuts]]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Notification:
    """What a monitor wants the group to send: an alert firing (again) or resolved.

    `changed_at` is when this monitor's view of the alert took this content: a
    claim compares it with what the group already sent (see `_claim`)."""

    status: Literal["firing", "resolved"]
    alert: Alert
    starts_at: float
    changed_at: float
    ends_at: float | None = None


def element_name(element: str) -> str:
    """`instance:etcd/1` -> `etcd/1`; `host:a` -> `host a`."""
    kind, _, name = element.partition(":")
    return name if kind == "instance" else f"{kind} {name}"


def redundancy_alerts(
    baseline: LiveAnalysis, live: LiveAnalysis, topology: Topology
) -> dict[str, Alert]:
    """An alert for every entry component whose margin is below its baseline."""
    out: dict[str, Alert] = {}
    for name, margin in live.margins.items():
        full = baseline.margins[name].failures
        if margin.failures >= full:
            continue
        down = _down_for(topology, name, live.down)
        subject = _names(down)
        verb = "is" if len(down) == 1 else "are"
        if margin.down:
            summary = f"{subject} {verb} down: {name} is down"
            alertname = "ComponentDown"
        else:
            summary = f"{subject} {verb} down: losing {_cuts(margin.cuts)} now takes {name} down"
            alertname = "RedundancyLost"
        out[f"redundancy/{name}"] = Alert(
            key=f"redundancy/{name}",
            alertname=alertname,
            component=name,
            severity=severity_of(margin.failures),
            summary=summary,
            margin=margin.failures,
            baseline=full,
            down=down,
            cuts=margin.cuts,
        )
    return out


def _down_for(topology: Topology, component: str, down: frozenset[str]) -> tuple[str, ...]:
    """The down elements under the instances of `component` and what it depends on."""
    out: set[str] = set()
    for comp in topology.dependency_order([component]):
        for inst in topology.instances[comp]:
            out.update(e for e in (inst.element, *topology.parents(inst)) if e in down)
    return tuple(sorted(out)) or tuple(sorted(down))


def _names(elements: Sequence[str]) -> str:
    names = [element_name(e) for e in elements]
    if len(names) <= 2:
        return " and ".join(names) or "nothing"
    return ", ".join(names[:-1]) + " and " + names[-1]


def _cuts(cuts: Sequence[Sequence[str]]) -> str:
    words = [" + ".join(element_name(e) for e in cut) for cut in cuts[:MAX_NAMED]]
    more = len(cuts) - len(words)
    text = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)
    if len(words) > 1 and len(cuts[0]) > 1:
        text = f"any of {text}"
    return text + (f" (and {more} more)" if more else "")


@dataclass
class AlertBook:
    """The alerts this monitor sees firing, and the notifications their changes call for."""

    firing: dict[str, Notification] = field(default_factory=dict)

    def update(self, alerts: Mapping[str, Alert], now: float) -> list[Notification]:
        out: list[Notification] = []
        for key, alert in alerts.items():
            old = self.firing.get(key)
            if old is not None and old.alert.fingerprint == alert.fingerprint:
                continue
            starts = old.starts_at if old is not None else now
            note = Notification("firing", alert, starts, now)
            self.firing[key] = note
            out.append(note)
        for key in [k for k in self.firing if k not in alerts]:
            old = self.firing.pop(key)
            out.append(Notification("resolved", old.alert, old.starts_at, now, ends_at=now))
        return out
