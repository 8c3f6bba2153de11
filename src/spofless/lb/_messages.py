"""What the controller and its workers tell each other, and the controller's health view.

One dataclass per message; `encode`/`decode` turn them into the JSON objects
`_channel.LineChannel` carries, one per line:

    controller -> worker   Settings (first), View (on every change), Routes (a backend
                           added or removed through the admin API), Stop
    worker -> controller   Ready, Stats (twice a second), Observation, Ejection

`BackendView` is the controller's verdict on one backend and `merge` the pure
rule that folds an event into it (a health transition, an ejection reported by
a worker, an operator's admin change); `worker_view` is what workers get of it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from spofless.health import Status, Transition
from spofless.lb._backend import LATENCY_BUCKETS
from spofless.lb._policy import OutlierPolicy

# -- the health view ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendState:
    """One backend as workers see it."""

    status: str  # up | down | unknown
    since: float  # wall time of its last status change
    admin: str  # enabled | drain | disabled
    ejected: bool
    up_since: float | None  # when it came back up or was enabled again: slow start


@dataclass(frozen=True, slots=True)
class BackendView:
    """The controller's verdict on one backend, besides what its health monitor holds."""

    admin: str = "enabled"  # enabled | drain | disabled, set through the admin API
    ejected_until: float = 0.0
    ejections: int = 0
    up_since: float | None = None  # set when it comes back up or is enabled again: slow start
    last_change: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Observation:
    """A worker saw a request to `backend` fail (passive check); `definite` for a refusal."""

    backend: str
    ok: bool
    definite: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Ejection:
    """A worker ejected `backend` after consecutive failures (outlier detection)."""

    backend: str
    detail: str


@dataclass(frozen=True, slots=True)
class AdminChange:
    state: str  # enabled | drain | disabled


def merge(
    view: BackendView,
    event: Transition | Ejection | AdminChange,
    now: float,
    outliers: OutlierPolicy,
) -> BackendView:
    """`view` after `event` at wall time `now`; `view` itself when the event changes nothing.

    - a health transition stamps the change; down -> up starts slow start;
    - an ejection of a backend not ejected now counts one more ejection and ejects it
      for the policy's time for that count; one already ejected stays as it is;
    - an admin change sets the admin state; enabling a drained or disabled backend
      readmits it with slow start, as its coming back up does (HAProxy's `set server
      ... state ready` after maintenance), so a rollout's replaced instance is not
      handed its full share while its caches are cold.
    """
    if isinstance(event, Transition):
        up_again = event.new is Status.UP and event.old is Status.DOWN
        return replace(view, last_change=now, up_since=now if up_again else view.up_since)
    if isinstance(event, Ejection):
        if view.ejected_until > now:
            return view
        count = view.ejections + 1
        return replace(view, ejections=count, ejected_until=now + outliers.ejection_time(count))
    readmitted = event.state == "enabled" and view.admin != "enabled"
    return replace(view, admin=event.state, up_since=now if readmitted else view.up_since)


def worker_view(
    views: dict[str, BackendView], health: dict[str, tuple[Status, float]], now: float
) -> dict[str, BackendState]:
    """What workers get: each backend's status and its change time from `health`."""
    return {
        name: BackendState(
            status=str(health.get(name, (Status.UNKNOWN, 0.0))[0]),
            since=health.get(name, (Status.UNKNOWN, 0.0))[1],
            admin=v.admin,
            ejected=v.ejected_until > now,
            up_since=v.up_since,
        )
        for name, v in views.items()
    }


# -- counters -------------------------------------------------------------------------


def _zeros(n: int) -> list[int]:
    return [0] * n


@dataclass(slots=True)
class BackendStats:
    """One backend's counters in one worker, or summed over workers."""

    active: int = 0  # gauge: in flight now
    requests: int = 0
    responses: list[int] = field(default_factory=lambda: _zeros(6))  # none, 1xx..5xx
    retries: int = 0
    connect_failures: int = 0
    spliced: int = 0
    buckets: list[int] = field(default_factory=lambda: _zeros(len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    idle: int = 0  # gauge: pooled connections

    def add(self, other: BackendStats, *, gauges: bool = True) -> None:
        """Add `other`'s counters (and its gauges unless `gauges` is False: a retired worker)."""
        self.requests += other.requests
        self.retries += other.retries
        self.connect_failures += other.connect_failures
        self.spliced += other.spliced
        self.latency_sum += other.latency_sum
        self.responses = [a + b for a, b in zip(self.responses, other.responses, strict=True)]
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        if gauges:
            self.active += other.active
            self.idle += other.idle


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    settings: dict[str, Any]  # LbSettings.model_dump(mode="json")
    view: dict[str, BackendState]
    seq: int = 0  # the view's number (see View)


@dataclass(frozen=True, slots=True)
class View:
    view: dict[str, BackendState]
    # Numbered by the controller, one more per change; workers echo the last one they
    # applied in their Stats, so a reader of the counters knows they follow a change
    # (a drain has reached every worker, and `active` counts what is left).
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Routes:
    """The routes changed at runtime (a backend added or removed through the admin API):
    the whole settings, the worker keeps its state for the backends it already has, and
    the view that goes with them (a new backend never serves before its view says so)."""

    settings: dict[str, Any]  # LbSettings.model_dump(mode="json")
    view: dict[str, BackendState]
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Stats:
    pid: int
    backends: dict[str, BackendStats]
    view_seq: int = 0  # the last View this worker had applied when it counted


Message = Settings | View | Routes | Stop | Ready | Stats | Observation | Ejection

_KINDS: dict[str, type[Any]] = {
    "settings": Settings,
    "view": View,
    "routes": Routes,
    "stop": Stop,
    "ready": Ready,
    "stats": Stats,
    "obs": Observation,
    "eject": Ejection,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def encode(msg: Message) -> dict[str, Any]:
    """The JSON object for `msg`: its fields and `kind`."""
    out = asdict(msg)
    out["kind"] = _NAMES[type(msg)]
    return out


def decode(obj: dict[str, Any]) -> Message:
    """The message a JSON object from `encode` stands for; ValueError for anything else."""
    cls = _KINDS.get(obj.get("kind", ""))
    if cls is None:
        raise ValueError(f"unknown message kind {obj.get('kind')!r}")
    args = {f.name: obj[f.name] for f in fields(cls) if f.name in obj}
    if "view" in args:
        args["view"] = {n: BackendState(**s) for n, s in args["view"].items()}
    if cls is Stats:
        args["backends"] = {n: BackendStats(**s) for n, s in args["backends"].items()}
    msg: Message = cls(**args)
    return msg
