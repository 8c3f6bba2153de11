"""What a drill measures, computed purely from what it recorded.

Times are seconds since the drill started (time.monotonic() minus the start).

- An `Outcome` is one client request of a traffic stream: when it started and
  ended, and whether it succeeded.
- The outage window of a fault on a stream (`outage_window`): from the last
  success before the first failure after the fault, to the first success after
  the last failure in the fault's period (until the next fault, or the end; on
  past the next fault while the stream has not recovered yet). A
  period without failures can still hold an outage as clients feel it, a stall:
  the longest gap between two successes, counted when it exceeds `slow`. A stream
  that never succeeds again has an outage to the end of the period and
  `recovered` false.
- Time to detect and time to recover come from the system's own status
  (`Snapshot`s, see `detect_and_recover`): the first snapshot after the fault in
  which a target instance differs (state, role, pid), and the first one after the
  fault ended in which the whole system is back to full redundancy.
- RPO (`rpo`): the acknowledged writes lost, and how far back in time they go:
  from the oldest lost write's acknowledgement to the fault that followed it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Outcome:
    start: float
    end: float
    ok: bool
    detail: str = ""  # an error's short text; the server that answered a success

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Window:
    requests: int  # ending in the fault's period
    errors: int
    outage: float  # seconds; 0 when clients saw no interruption
    last_ok_before: float | None
    first_ok_after: float | None
    recovered: bool  # a success came after the last failure
    max_latency: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def outage_window(
    outcomes: Sequence[Outcome], fault_at: float, until: float, slow: float
) -> Window:
    """The window a fault at `fault_at` opened on one stream, looking until `until`."""
    ordered = sorted(outcomes, key=lambda o: o.end)
    period = [o for o in ordered if fault_at <= o.end < until]
    failures = [o for o in period if not o.ok]
    max_latency = max((o.latency for o in period), default=0.0)
    if failures:
        first, last = failures[0], failures[-1]
        before = [o.end for o in ordered if o.ok and o.end <= first.start]
        after = [o.end for o in ordered if o.ok and o.end > last.end and o.end < until]
        start = before[-1] if before else first.start
        end = after[0] if after else until
        return Window(
            len(period),
            len(failures),
            round(end - start, 4),
            before[-1] if before else None,
            after[0] if after else None,
            bool(after),
            max_latency,
        )
    oks = [o.end for o in ordered if o.ok and o.end < until]
    prior = [t for t in oks if t < fault_at]
    points = ([prior[-1]] if prior else []) + [t for t in oks if t >= fault_at]
    gap = 0.0
    gap_at: tuple[float | None, float | None] = (None, None)
    for a, b in itertools.pairwise(points):
        if b - a > gap:
            gap, gap_at = b - a, (a, b)
    stalled = gap > slow
    return Window(
        len(period),
        0,
        round(gap, 4) if stalled else 0.0,
        gap_at[0] if stalled else None,
        gap_at[1] if stalled else None,
        True,
        max_latency,
    )


def outage_window_through(
    outcomes: Sequence[Outcome], fault_at: float, bounds: Sequence[float], slow: float
) -> Window:
    """The window of a fault at `fault_at` whose period ends at the first of `bounds`
    (the later faults' times, then the end), carried on past each bound while the
    stream has not recovered: a fault that starts in the middle of an outage (one a
    `when:` event fired on, 50 ms after the crash) does not cut the earlier fault's
    outage short."""
    win = outage_window(outcomes, fault_at, bounds[0], slow)
    for until in bounds[1:]:
        if win.recovered:
            break
        win = outage_window(outcomes, fault_at, until, slow)
    return win


def error_rate_over(outcomes: Sequence[Outcome], now: float, span: float) -> tuple[float, int]:
    """The error rate of the requests that ended in the last `span` seconds, and their count."""
    recent = [o for o in outcomes if now - span <= o.end <= now]
    if not recent:
        return 0.0, 0
    return sum(1 for o in recent if not o.ok) / len(recent), len(recent)


# -- the system's own view -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceView:
    state: str
    role: str | None
    pid: int | None
    restarts: int
    lag: int | None = None  # a PostgreSQL replica's bytes behind its primary


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    instances: Mapping[str, InstanceView]  # "db/0" -> what status said
    whole: bool  # full redundancy (see spofless.drill.system.whole)
    # What the parts' own APIs said besides status (spofless.drill.observe), when the
    # drill waits for an event that needs it:
    switchovers: frozenset[str] = frozenset()  # postgres components with one requested
    backends: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # lb/0 -> state


@dataclass(frozen=True, slots=True)
class Detection:
    detect: float | None  # seconds from the fault until status showed it
    recover: float | None  # seconds from the fault's end until the system was whole again
    seen: str = ""  # what status showed first


def detect_and_recover(
    snapshots: Sequence[Snapshot],
    targets: Sequence[str],
    fault_at: float,
    fault_end: float,
    until: float,
    recover_until: float | None = None,
) -> Detection:
    """When the system's status first showed the fault on one of `targets` (instance
    names; empty: any instance), before `until` (the next fault), and when it was whole
    again after `fault_end`, before `recover_until` (default `until`; later faults may
    overlap the recovery: it is the time until the system was whole, whatever else
    happened meanwhile)."""
    recover_until = until if recover_until is None else recover_until
    before = [s for s in snapshots if s.at <= fault_at]
    base = before[-1] if before else None
    detect, seen = None, ""
    if base is not None:
        for s in snapshots:
            if s.at <= fault_at or s.at >= until:
                continue
            change = _first_change(base, s, targets)
            if change:
                detect, seen = round(s.at - fault_at, 4), change
                break
    recover = None
    if detect is not None:
        for s in snapshots:
            if s.at >= max(fault_end, fault_at + detect) and s.at < recover_until and s.whole:
                recover = round(s.at - fault_end, 4)
                break
    return Detection(detect, recover, seen)


def _first_change(base: Snapshot, now: Snapshot, targets: Sequence[str]) -> str:
    names = targets or list(base.instances)
    for name in names:
        a, b = base.instances.get(name), now.instances.get(name)
        if a is None or b is None:
            continue
        if b.state != a.state:
            return f"{name} {b.state}"
        if b.pid != a.pid or b.restarts != a.restarts:
            return f"{name} restarted"
        if b.role != a.role:
            return f"{name} {b.role or 'without a role'}"
    # A role moving elsewhere in the target's component (a failover) shows the fault too.
    components = {n.rpartition("/")[0] for n in names}
    for name, b in now.instances.items():
        a = base.instances.get(name)
        if a is not None and name.rpartition("/")[0] in components and b.role != a.role:
            return f"{name} {b.role or 'without a role'}"
    return ""


@dataclass(frozen=True, slots=True)
class Seen:
    """An event, as `when:` names it (`db.role_change`, `db.replica_lag>1048576`), and
    what showed it."""

    key: str
    detail: str


class EventTracker:
    """What happened from one snapshot to the next, as `<component>.<event>`:

    - `role_change`: the instance holding a component's primary, leader or VIP role is
      another one than the last that held it (a failover seen through a gap in which
      none held it counts: the old primary is down before the new one is promoted);
    - `down`: an instance left `up`; `up`: one came back; `restart`: a new process;
    - `switchover`: a switchover of a postgres component was requested (its etcd key
      appeared; it is in progress until the new primary leads);
    - `vip_handover`: the load balancer instance last seen holding the VIP holds it no
      more (it released it, lost it, or another took it); with one VIP per region,
      any region's holder;
    - `backend_down`: an instance of a load balancer marks a backend that was up as
      not up (down, ejected, drained or disabled);
    - `replica_lag>N`, for each bound N in `lag_bounds[component]`: a replica of the
      component lags more than N bytes, and did not at the snapshot before (or there
      was none).
    """

    def __init__(self, lag_bounds: Mapping[str, Sequence[int]] | None = None) -> None:
        self._prev: Snapshot | None = None
        self._holders: dict[str, str] = {}  # component -> the last instance seen leading
        # load balancer -> the instances seen holding its VIP (one per region at most)
        self._vip: dict[str, frozenset[str]] = {}
        self._lag_bounds = dict(lag_bounds or {})

    def update(self, snap: Snapshot) -> list[Seen]:
        out: dict[str, str] = {}
        prev = self._prev
        if prev is not None:
            for name, new in snap.instances.items():
                old = prev.instances.get(name)
                if old is None:
                    continue
                comp = name.rpartition("/")[0]
                if old.state == "up" and new.state != "up":
                    out.setdefault(f"{comp}.down", f"{name} {new.state}")
                if old.state != "up" and new.state == "up":
                    out.setdefault(f"{comp}.up", f"{name} up")
                if (old.pid, old.restarts) != (new.pid, new.restarts) and new.pid is not None:
                    out.setdefault(f"{comp}.restart", f"{name} restarted")
            for comp in sorted(snap.switchovers - prev.switchovers):
                out[f"{comp}.switchover"] = f"a switchover of {comp} requested"
            for lb, states in snap.backends.items():
                before = prev.backends.get(lb, {})
                for backend, state in sorted(states.items()):
                    if before.get(backend) == "up" and state != "up":
                        comp = lb.rpartition("/")[0]
                        out.setdefault(f"{comp}.backend_down", f"{lb} marked {backend} {state}")
        for comp, holder in _holders(snap).items():
            if holder is None:
                continue
            last = self._holders.get(comp)
            if last is not None and last != holder:
                out[f"{comp}.role_change"] = f"{last} -> {holder}"
            self._holders[comp] = holder
        for comp, holders in _vip_holders(snap).items():
            # Empty: they left, none took it yet. With one VIP per region, one holder each.
            seen = self._vip.get(comp, frozenset())
            if left := seen - holders:
                now = f"{', '.join(sorted(holders))} holds it" if holders else "none holds it yet"
                out[f"{comp}.vip_handover"] = f"the VIP left {', '.join(sorted(left))}: {now}"
            # One hand-over, however many looks it takes: only the holders seen are kept.
            self._vip[comp] = holders
        for comp, bounds in self._lag_bounds.items():
            worst = _worst_lag(snap, comp)
            lagged = _worst_lag(prev, comp) if prev is not None else None
            for bound in bounds:
                was_above = lagged is not None and lagged[1] > bound
                if worst is not None and worst[1] > bound and not was_above:
                    out[f"{comp}.replica_lag>{bound}"] = f"{worst[0]} lags {_bytes(worst[1])}"
        self._prev = snap
        return [Seen(k, d) for k, d in out.items()]


def _vip_holders(s: Snapshot) -> dict[str, frozenset[str]]:
    """Each component: the instances holding its VIP (with one VIP per region, one per
    region); empty for the others, so that a holder seen before is missed."""
    held: dict[str, set[str]] = {}
    for name, v in s.instances.items():
        comp = name.rpartition("/")[0]
        held.setdefault(comp, set())
        if v.role == "vip-holder":
            held[comp].add(name)
    return {comp: frozenset(names) for comp, names in held.items()}


def _worst_lag(s: Snapshot, comp: str) -> tuple[str, int] | None:
    lags = [
        (n, v.lag)
        for n, v in s.instances.items()
        if n.rpartition("/")[0] == comp
        and (v.role or "").startswith("replica")
        and v.lag is not None
    ]
    return max(lags, key=lambda x: x[1]) if lags else None


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


_LEADING = ("primary", "leader", "holder", "vip-holder")


def _holders(s: Snapshot) -> dict[str, str | None]:
    held: dict[str, str | None] = {}
    for name, v in s.instances.items():
        comp = name.rpartition("/")[0]
        held.setdefault(comp, None)
        if v.role in _LEADING:
            held[comp] = name
    return held


# -- data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rpo:
    lost_writes: int
    seconds: float  # from the oldest lost write's acknowledgement to the fault after it
    by_fault: dict[int, int] = field(default_factory=dict)  # fault index -> writes lost


def rpo(lost_acked_at: Sequence[float], fault_times: Sequence[float]) -> Rpo:
    """RPO in writes and seconds, given when each lost write was acknowledged and when
    the faults began (in order)."""
    by_fault: dict[int, int] = {}
    worst = 0.0
    for at in lost_acked_at:
        later = [(i, t) for i, t in enumerate(fault_times) if t >= at]
        if not later:
            continue
        i, t = later[0]
        by_fault[i] = by_fault.get(i, 0) + 1
        worst = max(worst, t - at)
    return Rpo(len(lost_acked_at), round(worst, 4), by_fault)
