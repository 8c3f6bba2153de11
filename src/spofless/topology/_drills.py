"""The `drills:` section: named failure drills run by `spofless drill FILE --scenario NAME`.

    drills:
      primary-crash:
        steady_state: {max_error_rate: 0.0, min_primaries: 1}   # checked before and after
        traffic:
          - {http: {via: lb, to: lb, path: /}, rate: 50}         # or via: dns / vip / address
          - {sql_writes: {to: db}, rate: 50}                     # postgres, or a tcp lb to it
          - {sql_reads: {to: db-ro}, rate: 20}                   # the read-only route
        faults:
          - {at: 2s, kill: db, role: primary}                    # SIGKILL of its process tree
          - {at: 2s, pause: etcd, role: leader, for: 5s}         # SIGSTOP, SIGCONT after 5 s
          - {when: db.role_change, kill: lb/1}                   # fired by what status reports
          - {when: "db.replica_lag > 1MB", kill: db, role: primary}  # a replica behind
          - {at: 4s, cut: zone:eu/a, for: 3s}                    # lab only
        duration: 15s                                            # default: last fault + 5 s
        abort: {error_rate: 0.5, for: 10s}                       # stop and undo every fault
        expect: {lost_writes: 0, rto: 5s}                        # upper bounds

A fault has one action (`kill`, `stop`, `pause`, `resume`, `switchover`, and in the lab
`cut`, `partition`, `latency`, `loss`) and a target: an instance (`db/1`), a component
(`db`: with `role`, the instance in that role, else one of its instances drawn with the
drill's seed), or a host (`host:node-1`: every instance placed on it). `process` narrows
a PostgreSQL instance's tree to its `agent` or its `postmaster`. Lab faults take
elements (`host:h`, `zone:r/z`, `region:r`); a partition two groups of them.

`when:` names an event the system itself reports (see `parse_when`): `<component>.<event>`
with event `role_change`, `down`, `up`, `restart` (any component), `switchover` (a
postgres component: a switchover requested and not yet done), `vip_handover` (a load
balancer with `vip:`: the instance holding the address stops holding it),
`backend_down` (a load balancer with `admin_port`: one of its instances marks a
backend down), or `<postgres>.replica_lag > <size>` (a replica's lag, in bytes behind
the primary, goes above the bound; size `512kB`, `1MB`, `1GB`, 1024-based as in
PostgreSQL, or bytes).

This module checks shapes (pydantic, like the rest of the file) and, in
`drill_problems`, what the names refer to, with the file:line of each mistake.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from spofless.topology._errors import Problem
    from spofless.topology._model import Topology

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_seconds(value: object) -> object:
    """`500ms`, `2s`, `1.5m`, `2` (seconds) -> seconds as a float."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"duration {value!r} is not <number>[ms|s|m|h], e.g. 2s")
        return float(m.group(1)) * _UNIT[m.group(2)]
    return value


class Strict(BaseModel):
    """As the rest of the schema: frozen, no unknown fields (its own copy: the schema
    module imports this one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Seconds = Annotated[float, BeforeValidator(parse_seconds), Field(ge=0, le=86400)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

PROCESS_ACTIONS = ("kill", "stop", "pause", "resume")
LAB_ACTIONS = ("cut", "partition", "latency", "loss")
ACTIONS = (*PROCESS_ACTIONS, "switchover", *LAB_ACTIONS)
ROLES = ("primary", "replica", "leader", "holder")
# Events a `when:` waits for, from what the system reports of a component (its status,
# its agents' and load balancers' APIs, its etcd keys); the kinds each applies to.
EVENTS = (
    "role_change",
    "down",
    "restart",
    "up",
    "switchover",
    "vip_handover",
    "backend_down",
    "replica_lag",
)
_EVENT_KINDS = {
    "switchover": "postgres",
    "replica_lag": "postgres",
    "vip_handover": "load_balancer",
    "backend_down": "load_balancer",
}
_COMPONENT = r"([A-Za-z0-9][A-Za-z0-9_.\-]*?)"
_WHEN = re.compile(r"^" + _COMPONENT + r"\.(" + "|".join(EVENTS[:-1]) + r")$")
_LAG = re.compile(r"^" + _COMPONENT + r"\.replica_lag\s*>\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB)?$")
_SIZE = {None: 1, "B": 1, "kB": 1024, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


@dataclass(frozen=True, slots=True)
class Trigger:
    """What a `when:` waits for: an event of a component, with a bound for replica_lag."""

    component: str
    event: str
    bound: int | None = None  # replica_lag: bytes

    @property
    def key(self) -> str:
        """The event's name as the drill's event tracker reports it (`db.replica_lag>1024`)."""
        return f"{self.component}.{self.event}" + (
            f">{self.bound}" if self.bound is not None else ""
        )


def parse_when(text: str) -> Trigger:
    """`db.role_change`, `lb.backend_down`, `db.replica_lag > 1MB` -> Trigger; ValueError
    with the accepted forms otherwise."""
    m = _LAG.match(text.strip())
    if m:
        return Trigger(m.group(1), "replica_lag", int(float(m.group(2)) * _SIZE[m.group(3)]))
    m = _WHEN.match(text.strip())
    if m:
        return Trigger(m.group(1), m.group(2))
    raise ValueError(
        f"when: {text!r} is not <component>.<event>, event one of "
        + ", ".join(EVENTS[:-1])
        + ", or <component>.replica_lag > <size> (e.g. 1MB)"
    )


class HttpTarget(Strict):
    """Where HTTP requests go: `via: lb` (every instance of load balancer `to`, tried in
    turn as a client with several addresses does), `via: dns` (name `name` asked of the
    DNS component `to`, or of the only one), `via: vip` (load balancer `to`'s floating
    address; with one per region, each region's in turn), `via: address` (`address:
    ip:port`)."""

    via: Literal["lb", "dns", "vip", "address"] = "lb"
    to: str | None = None
    name: str | None = None
    address: str | None = None
    path: str = "/"
    method: Literal["GET", "POST"] = "GET"
    body: str = ""
    timeout: Seconds = 1.0  # per request attempt

    @model_validator(mode="after")
    def _complete(self) -> HttpTarget:
        if self.via == "address" and not self.address:
            raise ValueError("via: address needs `address: ip:port`")
        if self.via == "dns" and not self.name:
            raise ValueError("via: dns needs `name` (a record of the DNS component)")
        if self.via in ("lb", "vip") and not self.to:
            raise ValueError(f"via: {self.via} needs `to` (a load_balancer component)")
        if not self.path.startswith("/"):
            raise ValueError("path must start with /")
        return self


class SqlTarget(Strict):
    """Inserts of unique ids through the read-write route: a postgres component (libpq
    multi-host, target_session_attrs=read-write) or a tcp load balancer routing to it."""

    to: str
    table: str = Field("spofless_drill", pattern=r"^[a-z_][a-z0-9_]{0,62}$")


class SqlReadTarget(Strict):
    """`SELECT 1` on a fresh connection through the read-only route: a postgres component
    (libpq multi-host, target_session_attrs=prefer-standby) or a load balancer routing to
    its replicas."""

    to: str
    timeout: Seconds = 1.0


class TcpTarget(Strict):
    """A connection to any instance of component `to` (tried in order) within `timeout`."""

    to: str
    timeout: Seconds = 1.0


class TrafficSpec(Strict):
    http: HttpTarget | None = None
    sql_writes: SqlTarget | None = None
    sql_reads: SqlReadTarget | None = None
    tcp: TcpTarget | None = None
    rate: Annotated[float, Field(gt=0, le=1000)] = 20.0  # requests per second

    @model_validator(mode="after")
    def _one_kind(self) -> TrafficSpec:
        kinds = (self.http, self.sql_writes, self.sql_reads, self.tcp)
        if sum(x is not None for x in kinds) != 1:
            raise ValueError(
                "a traffic stream is one of `http:`, `sql_writes:`, `sql_reads:` or `tcp:`"
            )
        return self


class FaultSpec(Strict):
    """One fault: an action on a target, at a time or on an event, held for a while."""

    at: Seconds | None = None
    when: str | None = None
    for_: Seconds | None = Field(None, alias="for")
    kill: str | None = None
    stop: str | None = None
    pause: str | None = None
    resume: str | None = None
    switchover: str | None = None
    cut: str | list[str] | None = None
    partition: list[list[str]] | None = None
    latency: str | None = None
    loss: str | None = None
    role: Literal["primary", "replica", "leader", "holder"] | None = None
    process: Literal["all", "agent", "postmaster"] = "all"
    ms: Annotated[float, Field(ge=0, le=10_000)] = 100.0  # latency: added, each way
    jitter_ms: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    pct: Annotated[float, Field(ge=0, le=100)] = 20.0  # loss: dropped, each way

    @model_validator(mode="after")
    def _one_action(self) -> FaultSpec:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a fault has exactly one action of {', '.join(ACTIONS)}"
                + (f" (found {', '.join(given)})" if given else "")
            )
        if (self.at is None) == (self.when is None):
            raise ValueError("a fault has either `at:` (a time) or `when:` (an event)")
        if self.when is not None:
            parse_when(self.when)
        if self.partition is not None and (len(self.partition) != 2 or not all(self.partition)):
            raise ValueError("partition: two non-empty groups of elements, [[a, ...], [b, ...]]")
        if self.role is not None and self.action not in (*PROCESS_ACTIONS,):
            raise ValueError(f"role goes with {', '.join(PROCESS_ACTIONS)}, not {self.action}")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    @property
    def target(self) -> str | list[str] | list[list[str]]:
        value: str | list[str] | list[list[str]] = getattr(self, self.action)
        return value

    @property
    def trigger(self) -> Trigger | None:
        return parse_when(self.when) if self.when is not None else None

    @property
    def lab_only(self) -> bool:
        return self.action in LAB_ACTIONS


class SteadyState(Strict):
    """What must hold before a drill starts and again after it (within `within`)."""

    max_error_rate: Fraction = 0.0  # of a short probe of every traffic stream
    min_primaries: Annotated[int, Field(ge=0)] = 0  # of every postgres component
    all_up: bool = True  # every instance up and healthy
    within: Seconds = 60.0  # after the drill, the bound to get back to it


class AbortSpec(Strict):
    """Stop the drill and undo every fault when clients fail this much for this long."""

    error_rate: Fraction = 0.5
    for_: Seconds = Field(10.0, alias="for")


class DrillSpec(Strict):
    description: str | None = None
    steady_state: SteadyState = SteadyState()
    traffic: list[TrafficSpec] = Field(default_factory=list)
    faults: Annotated[list[FaultSpec], Field(min_length=1)]
    duration: Seconds | None = None  # None: the last timed fault's end + 5 s
    abort: AbortSpec | None = None
    # Upper bounds on the report's figures: {lost_writes: 0, rto: 5s, errors: 10}.
    expect: dict[str, Annotated[float, BeforeValidator(parse_seconds)]] = Field(
        default_factory=dict
    )

    def planned_duration(self) -> float:
        if self.duration is not None:
            return self.duration
        ends = [(f.at or 0.0) + (f.for_ or 0.0) for f in self.faults if f.at is not None]
        return max(ends, default=0.0) + 5.0


Drills = dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")], DrillSpec]


# -- what the names refer to ------------------------------------------------------------

Path = tuple[str | int, ...]
Report = Callable[[Path, str], None]


def drill_problems(topology: Topology) -> list[Problem]:
    """Every name in the `drills:` section that the topology does not have, with where it is
    written (a component, instance, host, zone, region, DNS record or role that is not there)."""
    from spofless.topology._errors import Problem
    from spofless.topology._load import field_path

    problems: list[Problem] = []

    def report(loc: tuple[str | int, ...], message: str) -> None:
        where = topology.location_of(*loc)
        line, col = (where.line, where.column) if where else (0, 0)
        problems.append(Problem(topology.source, line, col, field_path(loc), message))

    for name, drill in drills_of(topology).items():
        base: tuple[str | int, ...] = ("drills", name)
        for i, t in enumerate(drill.traffic):
            _check_traffic(topology, t, (*base, "traffic", i), report)
        for i, f in enumerate(drill.faults):
            _check_fault(topology, f, (*base, "faults", i), report)
    return problems


def drills_of(topology: Topology) -> Mapping[str, DrillSpec]:
    """The validated `drills:` of a topology (empty when it has none)."""
    from pydantic import TypeAdapter

    raw = topology.data.get("drills") or {}
    return TypeAdapter(Drills).validate_python(raw)


def _check_traffic(
    topology: Topology, t: TrafficSpec, loc: tuple[str | int, ...], report: Report
) -> None:
    comps = topology.components
    if t.http is not None:
        h = t.http
        if h.to is not None and h.via in ("lb", "vip"):
            c = comps.get(h.to)
            if c is None or c.kind != "load_balancer":
                report((*loc, "http", "to"), f"no load_balancer component {h.to!r}")
            elif h.via == "vip" and getattr(c, "vip", None) is None:
                report((*loc, "http", "to"), f"{h.to} has no `vip:`")
        if h.via == "dns":
            dns = [n for n, c in comps.items() if c.kind == "dns"]
            chosen = [h.to] if h.to else dns
            if h.to is not None and h.to not in dns:
                report((*loc, "http", "to"), f"no dns component {h.to!r}")
            elif len(chosen) != 1:
                report((*loc, "http"), "name the dns component in `to` (there is not exactly one)")
            else:
                records = getattr(comps[chosen[0]], "records", {}) or {}
                if h.name not in records:
                    report((*loc, "http", "name"), f"{chosen[0]} has no record {h.name!r}")
    if t.tcp is not None and t.tcp.to not in comps:
        report((*loc, "tcp", "to"), f"unknown component {t.tcp.to!r}")
    for kind, sql in (("sql_writes", t.sql_writes), ("sql_reads", t.sql_reads)):
        if sql is None:
            continue
        c = comps.get(sql.to)
        if c is None or c.kind not in ("postgres", "load_balancer"):
            report((*loc, kind, "to"), f"no postgres or load_balancer component {sql.to!r}")


def _check_fault(
    topology: Topology, f: FaultSpec, loc: tuple[str | int, ...], report: Report
) -> None:
    action = f.action
    if f.when is not None:
        problem = _trigger_problem(topology, parse_when(f.when))
        if problem:
            report((*loc, "when"), problem)
    if action in PROCESS_ACTIONS:
        target = str(f.target)
        problem = _process_target_problem(topology, target, f.role)
        if problem:
            report((*loc, action), problem)
    elif action == "switchover":
        c = topology.components.get(str(f.target))
        if c is None or c.kind != "postgres":
            report((*loc, action), f"no postgres component {f.target!r}")
    else:
        groups: list[list[str]]
        if action == "partition":
            groups = f.partition or []
        elif isinstance(f.target, list):
            groups = [[str(x) for x in f.target]]
        else:
            groups = [[str(f.target)]]
        for group in groups:
            for element in group:
                problem = _element_problem(
                    topology, element, host_ok=action in ("cut", "partition")
                )
                if problem:
                    report((*loc, action), problem)


def _trigger_problem(topology: Topology, t: Trigger) -> str | None:
    comp = topology.components.get(t.component)
    if comp is None:
        return f"unknown component {t.component!r}"
    kind = _EVENT_KINDS.get(t.event)
    if kind is not None and comp.kind != kind:
        return f"{t.event} is an event of a {kind} component; {t.component} is a {comp.kind}"
    if t.event == "vip_handover" and getattr(comp, "vip", None) is None:
        return f"{t.component} has no `vip:`: no hand-over to wait for"
    if t.event == "backend_down" and getattr(comp, "admin_port", None) is None:
        return (
            f"{t.component} has no `admin_port`: its backends' states are read from its admin API"
        )
    return None


def _process_target_problem(topology: Topology, target: str, role: str | None) -> str | None:
    if target.startswith("host:"):
        host = target.removeprefix("host:")
        if host not in topology.hosts:
            return f"unknown host {host!r}"
        if role is not None:
            return "role goes with a component, not a host"
        return None
    component, sep, index = target.partition("/")
    comp = topology.components.get(component)
    if comp is None:
        return f"unknown component {component!r}"
    if sep:
        if not index.isdigit() or int(index) >= comp.instance_count:
            return f"{component} has instances 0..{comp.instance_count - 1}, not {index!r}"
        if role is not None:
            return "role goes with a component, not one of its instances"
    if role is not None:
        allowed = {
            "postgres": ("primary", "replica"),
            "etcd": ("leader",),
            "load_balancer": ("holder",) if getattr(comp, "vip", None) is not None else (),
        }.get(comp.kind, ())
        if role not in allowed:
            return f"{component} (kind {comp.kind}) has no role {role!r}" + (
                f" (roles: {', '.join(allowed)})" if allowed else ""
            )
    return None


def _element_problem(topology: Topology, element: str, *, host_ok: bool) -> str | None:
    kind, sep, name = element.partition(":")
    if not sep:
        return f"{element!r}: an element is host:<name>, zone:<region>/<zone> or region:<name>"
    if kind == "host":
        if not host_ok:
            return "latency and loss go on zone and region links, not on a host"
        return None if name in topology.hosts else f"unknown host {name!r}"
    if kind == "zone":
        return None if name in topology.zones else f"unknown zone {name!r}"
    if kind == "region":
        return None if name in topology.regions else f"unknown region {name!r}"
    return f"{element!r}: an element is host:<name>, zone:<region>/<zone> or region:<name>"
