"""Active-passive routes of the load balancers: the hand-over events and an alert.

    route_events(view, routes, now, event) -> [Event]   a route failed over or back
    backup_alerts(views) -> {key: Alert}               the routes on their backups

A load balancer's `/status` says, per route with backups (`backup:`), whether it
sends to its backups and which backends serve (spofless.lb._handover). A change
seen on one balancer instance is an event (`route_failover`, warning;
`route_failback`, info); the first look at an instance is not a change.

An alert fires, once per load balancer component and route, while any of its
instances that answers sends the route to its backups: every primary is down,
ejected, drained or disabled. It names the primaries that cannot serve and the
backups left, and its severity comes from what is left, as the redundancy
alerts' does (`severity_of`): one backup serving is `error` (losing it takes the
route down), none `critical`. It resolves at the failback. A balancer that does
not answer drops out: its own down alert speaks for it. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from spofless.monitor._alerts import Alert, severity_of
from spofless.monitor._history import Event

HANDOVER_EVENTS = frozenset({"route_failover", "route_failback"})


class _LbView(Protocol):
    name: str
    state: str
    routes: dict[str, dict[str, Any]]


def route_events(
    view: _LbView,
    routes: dict[str, Any],
    now: float,
    event: Callable[..., Event],
) -> list[Event]:
    """The hand-overs in a look at load balancer `view` whose /status gave `routes`."""
    out: list[Event] = []
    for key, route in sorted(routes.items()):
        if not isinstance(route, dict):
            continue
        before = view.routes.get(key)
        view.routes[key] = route
        on_backup = bool(route.get("on_backup"))
        if before is None or bool(before.get("on_backup")) == on_backup:
            continue
        serving = ", ".join(route.get("serving") or []) or "none"
        primaries = ", ".join(route.get("backends") or [])
        if on_backup:
            text = (
                f"{view.name}: route {key} failed over to its backups ({serving} serving): "
                f"no primary ({primaries}) can take requests"
            )
            out.append(event(now, "route_failover", view.name, "warning", text, route=key))
        else:
            text = f"{view.name}: route {key} failed back to its primaries ({serving})"
            out.append(event(now, "route_failback", view.name, "info", text, route=key))
    return out


def backup_alerts(views: Iterable[_LbView]) -> dict[str, Alert]:
    """One alert per (load balancer component, route) on its backups somewhere."""
    found: dict[str, tuple[str, str, set[str], set[str], list[str]]] = {}
    for view in views:
        if view.state != "up":
            continue
        comp = view.name.rpartition("/")[0]
        for key, route in view.routes.items():
            if not route.get("on_backup"):
                continue
            _, _, down, serving, instances = found.setdefault(
                f"backup/{comp}/{key}", (comp, key, set(), set(), [])
            )
            down.update(route.get("backends") or [])
            serving.update(route.get("serving") or [])
            instances.append(view.name)
    out: dict[str, Alert] = {}
    for alert_key, (comp, key, down, serving, instances) in sorted(found.items()):
        left = (
            f"losing {' or '.join(sorted(serving))} now takes the route down"
            if serving
            else "and no backup can either"
        )
        summary = (
            f"{comp}: route {key} is on its backups ({', '.join(sorted(instances))}): "
            f"no primary ({', '.join(sorted(down))}) can take requests; {left}"
        )
        out[alert_key] = Alert(
            key=alert_key,
            alertname="RouteOnBackup",
            component=comp,
            severity=severity_of(len(serving)),
            summary=summary,
            margin=len(serving),
            baseline=len(serving) + len(down),
            down=tuple(f"instance:{b}" for b in sorted(down)),
            cuts=tuple((f"instance:{b}",) for b in sorted(serving)),
        )
    return out
