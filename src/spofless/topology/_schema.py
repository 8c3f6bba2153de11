"""The topology file's schema (v1): pydantic models of what the YAML may say.

These models check shapes and types only. Cross-references (a host's zone, a
component's instances and needs, `entry`) are checked in `_load.py`, which
knows where each value stands in the file.

Component kinds: `kind` is free text for the analysis. Kinds that spofless can
run validate their own fields (`_kinds.py`); every other kind accepts only the
common fields and a free `settings:` mapping that spofless ignores. Unknown
fields are errors everywhere, so a typo never passes silently.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from spofless.topology._drills import Drills

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# Names become element names (`host:<name>`) and file names under the state dir.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=63)]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> object:
    """`14d` -> 1209600.0 seconds; numbers pass through as seconds."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"duration {value!r} is not <number><s|m|h|d|w>, e.g. 14d")
        return float(m.group(1)) * _UNIT[m.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class Strict(BaseModel):
    """Base of every schema model: frozen, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AvailabilityDefaults(Strict):
    """Built-in availabilities of each element type, overridable in `defaults:`."""

    # Typical figures for cloud VMs (three nines), hosts and zones (published SLAs).
    instance: Probability = 0.999
    host: Probability = 0.9995
    zone: Probability = 0.9999
    region: Probability = 0.99995


class Defaults(Strict):
    availability: AvailabilityDefaults = AvailabilityDefaults()


class ZoneSpec(Strict):
    availability: Probability | None = None


class RegionSpec(Strict):
    zones: list[Name] | dict[Name, ZoneSpec | None] = Field(default_factory=list)
    availability: Probability | None = None

    def zone_specs(self) -> dict[str, ZoneSpec]:
        """The zones as a mapping, whichever form the file used."""
        if isinstance(self.zones, list):
            return {z: ZoneSpec() for z in self.zones}
        return {z: spec or ZoneSpec() for z, spec in self.zones.items()}


class HostSpec(Strict):
    zone: str | None = None  # "<region>/<zone>"
    availability: Probability | None = None
    # Where the host's instances listen; loopback unless the file says otherwise.
    address: str = "127.0.0.1"


class Component(Strict):
    """Fields every component has; the analysis reads only these."""

    kind: str
    instances: Annotated[int, Field(ge=1)] | list[Name]
    needs: list[Name] = Field(default_factory=list)
    min_up: Annotated[int, Field(ge=1)] | Literal["majority"] = 1
    availability: Probability | None = None
    description: str | None = None

    @field_validator("kind")
    @classmethod
    def _kind_is_a_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("kind must be a short name such as service, postgres or cache")
        return v

    @property
    def instance_count(self) -> int:
        return self.instances if isinstance(self.instances, int) else len(self.instances)

    @property
    def required_up(self) -> int:
        """`min_up` as a number: majority is floor(n/2)+1."""
        if self.min_up == "majority":
            return self.instance_count // 2 + 1
        return self.min_up


class AnalysisOnlyComponent(Component):
    """A kind spofless does not run; `settings` is free for the user's own notes."""

    settings: dict[str, Any] = Field(default_factory=dict)


class HealthCheck(Strict):
    """How to tell whether one instance is healthy. Shared by every runtime part.

    `fall` consecutive failures mark an instance down, `rise` successes mark it
    up again. A refused or reset connection is a definite failure that the
    detector may act on at once (see spofless.health).
    """

    type: Literal["tcp", "http", "command", "postgres"] = "tcp"
    path: str = "/healthz"  # http: the path to GET
    expect_status: list[int] = Field(default_factory=lambda: [200])  # http
    expect_body: str | None = None  # http: a substring the body must contain
    command: str | None = None  # command: exit status 0 is healthy; {host} {port} expand
    # tcp: an application-level check (HAProxy's tcp-check send/expect): `send` is written
    # after connecting, and the answer must contain `expect` within `timeout`. Without
    # them a connect alone counts, which cannot see a frozen (SIGSTOPped) process.
    send: str | None = None
    expect: str | None = None
    # Fast by default: a silent instance is detected within about one second.
    interval: Annotated[float, Field(gt=0, le=3600)] = 0.25
    timeout: Annotated[float, Field(gt=0, le=3600)] = 0.25
    fall: Annotated[int, Field(ge=1, le=100)] = 2
    rise: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _command_given(self) -> HealthCheck:
        if self.type == "command" and not self.command:
            raise ValueError("a health check of type command needs `command`")
        if self.type != "tcp" and (self.send is not None or self.expect is not None):
            raise ValueError("`send` and `expect` belong to health checks of type tcp")
        if self.send is not None and not self.expect:
            raise ValueError("a tcp check with `send` needs `expect` (what the answer contains)")
        return self


class RouteHealthCheck(HealthCheck):
    """A load balancer route's own check of its backends (`routes[].health`).

    `port` checks another port than the one traffic goes to: instance i of the
    target is checked at `port + i`, the convention of every main port. It lets a
    tcp route to PostgreSQL ask each instance's agent API (`/primary`, `/replica`)
    rather than only see that the postmaster accepts connections.
    """

    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # None: the traffic port


class RuntimeComponent(Component):
    """A kind spofless runs. Instance i's main port is `port + i` (one port per instance,
    so that instances sharing a machine never collide)."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    health: HealthCheck | None = None

    @model_validator(mode="after")
    def _ports_fit(self) -> RuntimeComponent:
        if self.port is not None and self.port + self.instance_count - 1 > 65535:
            raise ValueError(f"port {self.port} + {self.instance_count} instances exceeds 65535")
        return self


class LinkSpec(Strict):
    """What a packet sees between two places, one way: added delay, jitter, loss."""

    latency_ms: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    jitter_ms: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    loss_pct: Annotated[float, Field(ge=0, lt=100)] = 0.0


class LabLinks(Strict):
    """Between two zones of one region, and between two regions (totals, one way)."""

    # A metro-area hop between zones, a continent between regions: close enough
    # to real clouds that timeouts tuned in the lab hold outside it.
    zone: LinkSpec = LinkSpec(latency_ms=1.0)
    region: LinkSpec = LinkSpec(latency_ms=30.0)
    # netem when the kernel has it; relay: spofless's own user-space link emulator.
    backend: Literal["auto", "netem", "relay"] = "auto"

    @model_validator(mode="after")
    def _regions_farther_than_zones(self) -> LabLinks:
        z, r = self.zone, self.region
        for name in ("latency_ms", "jitter_ms", "loss_pct"):
            if getattr(r, name) < getattr(z, name):
                raise ValueError(
                    f"region.{name} ({getattr(r, name)}) is less than zone.{name} "
                    f"({getattr(z, name)}): a packet between regions also crosses two zone "
                    "links, so the region figure must be at least the zone one"
                )
        return self


class LabSpec(Strict):
    """`lab:`: the private range the lab's hosts get their addresses from, and its links."""

    # RFC 1918, rarely used by home and office networks; only ever inside the lab.
    subnet: str = "10.77.0.0/16"
    links: LabLinks = LabLinks()

    @field_validator("subnet")
    @classmethod
    def _private_subnet(cls, v: str) -> str:
        import ipaddress

        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"subnet must be an IPv4 network such as 10.77.0.0/16: {exc}"
            ) from None
        if not net.is_private or net.prefixlen > 26:
            raise ValueError(
                "subnet must be a private IPv4 range of at least /26, e.g. 10.77.0.0/16"
            )
        return v


class SecuritySpec(Strict):
    """`security:`: where the topology's secrets are (spofless.security) and whether
    PostgreSQL and etcd use TLS. Passwords and keys are never written in the topology file."""

    # The secrets directory, relative to the file; default .spofless/<stem>/secrets.
    secrets: str | None = None
    # PostgreSQL between members and for clients: hostssl, verify-full; etcd for clients
    # and between members: https, client certificates from the topology's CA required.
    tls: bool = True


class Objective(Strict):
    rto: Duration | None = None  # how long the system may be down after a failure
    rpo: Duration | None = None  # how much of the latest acknowledged writes it may lose


class Objectives(Objective):
    """`objectives:`: the recovery objectives every entry component must meet (`check`
    states what the design can meet and flags the rest); `entry:` sets them for one
    entry component. Durations: `60s`, `5m`, 0.

        objectives: {rto: 60s, rpo: 0, entry: {reports: {rto: 1h, rpo: 5m}}}
    """

    entry: dict[Name, Objective] = Field(default_factory=dict)

    def of(self, component: str) -> Objective:
        """The objectives of entry component `component` (its own over the system's)."""
        own = self.entry.get(component)
        return Objective(
            rto=own.rto if own is not None and own.rto is not None else self.rto,
            rpo=own.rpo if own is not None and own.rpo is not None else self.rpo,
        )


class TopologyFile(Strict):
    """The whole file, components still as raw mappings (validated by kind later)."""

    version: Literal[1] = 1
    name: Name
    description: str | None = None
    defaults: Defaults = Defaults()
    regions: dict[Name, RegionSpec] = Field(default_factory=dict)
    hosts: dict[Name, HostSpec | None] = Field(default_factory=dict)
    components: dict[Name, dict[str, Any]]
    entry: list[Name] = Field(min_length=1)
    lab: LabSpec = LabSpec()
    security: SecuritySpec = SecuritySpec()
    objectives: Objectives | None = None
    drills: Drills = Field(default_factory=dict)  # spofless drill (see _drills.py)
