"""Active-passive routes: which backends of a route serve, and the hand-overs between them.

A route's backends are its primaries and its backups (`backup: true`, HAProxy's
`backup` servers). One rule, pure, used by every worker to choose and by the
controller to report:

- the primaries that may take new requests (eligible: up, or not down on a route
  that fails open; enabled; not ejected; weight above 0) serve;
- when none may, the backups that may serve instead: the route is *on its
  backups*;
- when neither may, nothing serves and the route fails open (every enabled
  backend is tried, primaries first) or refuses, as a route without backups does.

The route's tier (primaries or backups) changes only when the other tier serves:
a moment with nothing serving keeps it. Failing over is the route going to its
backups; failing back is a primary eligible again. A primary that was down is
eligible again once it passed `rise` checks in a row (the health detector's
rule), so one lucky check of a flapping primary does not take the route back.
Requests in flight stay where they are: a failback lets the backups finish what
they have, and a tcp connection open to a backup stays there until it closes.

A primary that an operator drains or disables counts as unable to take requests:
draining every primary hands the route to its backups, on purpose (maintenance
of the primary site).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from spofless.lb._backend import may_take_requests
from spofless.lb._messages import BackendState
from spofless.lb._settings import BackendSpec, RouteSpec

T = TypeVar("T")


def serving(primaries: Sequence[T], backups: Sequence[T], usable: Callable[[T], bool]) -> list[T]:
    """The backends that get new requests: the usable primaries, else the usable backups."""
    live = [b for b in primaries if usable(b)]
    if live or not backups:
        return live
    return [b for b in backups if usable(b)]


def route_keys(routes: Sequence[RouteSpec]) -> list[str]:
    """A name per route for logs, /status and metrics: its target, with `#i` (its index)
    when two routes send to the same target (by path or host)."""
    names = [r.name for r in routes]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


@dataclass(frozen=True, slots=True)
class RouteTier:
    """Which tier of a route serves, as the controller follows it."""

    on_backup: bool = False
    serving: tuple[str, ...] = ()  # the backends that get new requests now
    since: float = 0.0  # wall time of the last hand-over (0: none yet)
    failovers: int = 0
    failbacks: int = 0


@dataclass(frozen=True, slots=True)
class Handover:
    """A route went to its backups (`to_backup`) or back to its primaries."""

    route: str
    to_backup: bool
    serving: tuple[str, ...]  # the backends that now get new requests
    others: tuple[tuple[str, str], ...]  # the other tier: (backend, why it is not serving)

    def sentence(self) -> str:
        """One line for the log and the monitor's event."""
        now = ", ".join(self.serving)
        others = ", ".join(f"{name} {why}" for name, why in self.others)
        if self.to_backup:
            return f"route {self.route} failed over to its backups {now} (primaries: {others})"
        return f"route {self.route} failed back to its primaries {now} (backups: {others})"


def state_word(state: BackendState | None) -> str:
    """Why a backend is or is not serving, in one word: up, down, unknown, drain,
    disabled or ejected."""
    if state is None:
        return "unknown"
    if state.ejected:
        return "ejected"
    return state.admin if state.admin != "enabled" else state.status


def follow(
    key: str,
    route: RouteSpec,
    view: Mapping[str, BackendState],
    tier: RouteTier,
    now: float,
) -> tuple[RouteTier, Handover | None]:
    """The route's tier after the controller's `view`, and the hand-over it makes, if any."""
    need_up = not route.fail_open

    def usable(b: BackendSpec) -> bool:
        s = view.get(b.name)
        return (
            s is not None
            and b.weight > 0
            and may_take_requests(s.status, s.admin, s.ejected, need_up=need_up)
        )

    primaries = [b for b in route.backends if not b.backup]
    backups = [b for b in route.backends if b.backup]
    live = serving(primaries, backups, usable)
    names = tuple(b.name for b in live)
    if not live:  # nothing serves: the tier stays what it was
        return replace(tier, serving=()), None
    on_backup = live[0].backup
    if on_backup == tier.on_backup:
        return replace(tier, serving=names), None
    other = primaries if on_backup else backups
    handover = Handover(
        key, on_backup, names, tuple((b.name, state_word(view.get(b.name))) for b in other)
    )
    new = RouteTier(
        on_backup=on_backup,
        serving=names,
        since=now,
        failovers=tier.failovers + on_backup,
        failbacks=tier.failbacks + (not on_backup),
    )
    return new, handover
