"""The lab's layout, computed purely from a topology: namespaces, bridges, links, addresses.

    switch namespace  spf<id>-sw
        core ─┬─ rh0 ══ rl0 ─ r0 ─┬─ zh0 ══ zl0 ─ z0 ─┬─ h0 ── eth0 [spf<id>-h0  10.77.0.10]
              │   (region link)    │   (zone link)      └─ h1 ── eth0 [spf<id>-h1  10.77.0.11]
              │                    └─ zh1 ══ zl1 ─ z1 ── h2 ── eth0 [spf<id>-h2  ...]
              ├─ rh1 ══ rl1 ─ r1 ── ...
              └─ h9 ── eth0 [hosts without a zone, and `lab-default` for hostless instances]

One flat IPv4 subnet spans the lab, so every host reaches every other on-link (ARP and
gratuitous ARP cross zones and regions, as a floating address needs). Every interface but
the hosts' `eth0` lives in the switch namespace, every name there is short and fixed, and
the namespaces carry the lab id: two labs never share a name, and nothing is created in
the machine's own namespace.

A zone link joins a zone's bridge to its region's bridge, a region link a region's bridge
to the core. Impairments are per crossing and per direction, derived so that the file's
figures are what a packet sees end to end, one way:

    zones of one region : zone link x2                 -> links.zone
    two regions         : zone link x2 + region link x2 -> links.region
    zoneless host <-> a zoned host                       -> half of links.region

so a zone link carries half of `links.zone` and a region link half the difference.
Jitter adds up the same way (approximately: two uniform jitters are not one).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from spofless.lab._errors import LabError
from spofless.topology import LabSpec, Topology, topology_from_data

DEFAULT_HOST = "lab-default"
# Host addresses start at .10 of the subnet; the last RESERVED_TOP addresses below the
# broadcast address are never given to a host, so virtual IPs can be taken from there.
FIRST_HOST_OFFSET = 10
RESERVED_TOP = 16
IFNAMSIZ = 15  # usable characters of a Linux interface name
HOST_IFNAME = "eth0"
CORE_BRIDGE = "core"


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one crossing of a link does to a packet, in one direction."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    def plus(self, other: Impairment) -> Impairment:
        """Both impairments one after the other: delays add, losses compound."""
        kept = (1 - self.loss_pct / 100) * (1 - other.loss_pct / 100)
        return Impairment(
            self.delay_ms + other.delay_ms,
            self.jitter_ms + other.jitter_ms,
            round((1 - kept) * 100, 6),
        )

    @property
    def none(self) -> bool:
        return self.delay_ms == 0 and self.jitter_ms == 0 and self.loss_pct == 0


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One host: its namespace, its address, and where its cable plugs into the switch."""

    name: str
    netns: str
    address: str
    port: str  # the switch-side end of its veth (the host side is `eth0`)
    bridge: str  # the bridge that port is on
    zone: str | None = None
    region: str | None = None

    @property
    def element(self) -> str:
        return f"host:{self.name}"


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """A zone link (zone bridge -> region bridge) or a region link (region bridge -> core)."""

    element: str  # "zone:<region>/<zone>" or "region:<region>"
    lower: str  # the end on the lower bridge
    lower_bridge: str
    upper: str  # the end on the upper bridge; cutting the link detaches it
    upper_bridge: str
    impairment: Impairment  # per crossing, each direction


@dataclass(frozen=True)
class LabPlan:
    """Everything the lab makes, by name. Serialisable: the state file holds one."""

    lab_id: str
    subnet: str
    switch: str  # the switch namespace
    bridges: tuple[str, ...]
    hosts: Mapping[str, HostPlan]
    links: tuple[LinkPlan, ...]
    backend: str = "auto"
    default_host: str | None = None  # the host the lab added for hostless instances
    # A namespace on the core for whoever watches the lab from inside it (the stack
    # supervisor's health checks, drill clients): it reaches every host, is no topology
    # host, and has the subnet's top address.
    control: HostPlan | None = None

    def machines(self) -> tuple[HostPlan, ...]:
        """Every namespace with an `eth0`: the hosts, then the control namespace."""
        return (*self.hosts.values(), *([self.control] if self.control else []))

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab, the switch last (hosts' cables end there)."""
        return (*(h.netns for h in self.machines()), self.switch)

    def host(self, name: str) -> HostPlan:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts) or "none"
            raise LabError(f"unknown host '{name}' (the lab's hosts: {known})") from None

    def link(self, element: str) -> LinkPlan:
        for link in self.links:
            if link.element == element:
                return link
        known = ", ".join(lk.element for lk in self.links) or "none"
        raise LabError(f"no link for '{element}' (the lab's links: {known})")

    def free_addresses(self) -> list[str]:
        """Addresses of the subnet no host has, for virtual IPs (the top one is the control's)."""
        net = ipaddress.IPv4Network(self.subnet)
        top = int(net.broadcast_address) - 2
        return [str(ipaddress.IPv4Address(top - i)) for i in range(RESERVED_TOP - 1)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabPlan:
        hosts = {k: HostPlan(**v) for k, v in data["hosts"].items()}
        links = tuple(
            LinkPlan(**{**lk, "impairment": Impairment(**lk["impairment"])}) for lk in data["links"]
        )
        return cls(
            lab_id=data["lab_id"],
            subnet=data["subnet"],
            switch=data["switch"],
            bridges=tuple(data["bridges"]),
            hosts=hosts,
            links=links,
            backend=data["backend"],
            default_host=data["default_host"],
            control=HostPlan(**data["control"]) if data.get("control") else None,
        )


def lab_id_for(topology: Topology) -> str:
    """A short id from the topology file's absolute path: the same file, the same lab."""
    source = topology.source
    if source.startswith("<"):
        return lab_id_for_path(source + topology.name)
    return lab_id_for_path(source)


def lab_id_for_path(path: str | Path) -> str:
    """The lab id of the file at `path` (it need not be valid, or exist, to be taken down)."""
    key = str(Path(path).resolve()) if not str(path).startswith("<") else str(path)
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:6]


def netns_prefix(lab_id: str) -> str:
    return f"spf{lab_id}-"


def lab_spec(topology: Topology) -> LabSpec:
    """The topology's `lab:` section (validated when the file was loaded)."""
    return LabSpec.model_validate(topology.data.get("lab") or {})


def needs_default_host(topology: Topology) -> bool:
    return any(i.host is None for i in topology.all_instances())


def plan_lab(topology: Topology, lab_id: str | None = None) -> LabPlan:
    """The lab for `topology`: pure, no I/O. Raises LabError when the subnet is too small."""
    lab_id = lab_id or lab_id_for(topology)
    if not lab_id.isalnum() or not 1 <= len(lab_id) <= 8:
        raise LabError(f"lab id '{lab_id}' must be 1 to 8 letters or digits")
    spec = lab_spec(topology)
    prefix = netns_prefix(lab_id)

    regions = list(topology.regions)
    zones = list(topology.zones)
    bridges = [CORE_BRIDGE, *(f"r{i}" for i in range(len(regions)))]
    bridges += [f"z{i}" for i in range(len(zones))]
    region_bridge = {r: f"r{i}" for i, r in enumerate(regions)}
    zone_bridge = {z: f"z{i}" for i, z in enumerate(zones)}

    zone_cross, region_cross = crossing_impairments(spec)
    links: list[LinkPlan] = []
    for i, r in enumerate(regions):
        links.append(
            LinkPlan(f"region:{r}", f"rl{i}", f"r{i}", f"rh{i}", CORE_BRIDGE, region_cross)
        )
    for i, z in enumerate(zones):
        rb = region_bridge[z.split("/", 1)[0]]
        links.append(LinkPlan(f"zone:{z}", f"zl{i}", f"z{i}", f"zh{i}", rb, zone_cross))

    names = list(topology.hosts)
    default_host = None
    if needs_default_host(topology):
        default_host = DEFAULT_HOST
        if default_host in topology.hosts:
            raise LabError(
                f"the topology has a host named '{DEFAULT_HOST}', the name the lab gives the "
                "host of instances placed on no host; rename that host"
            )
        names.append(default_host)
    addresses = _addresses(spec.subnet, len(names))
    hosts: dict[str, HostPlan] = {}
    for i, (name, address) in enumerate(zip(names, addresses, strict=True)):
        th = topology.hosts.get(name)
        zone = th.zone if th is not None else None
        bridge = zone_bridge[zone] if zone is not None else CORE_BRIDGE
        hosts[name] = HostPlan(
            name=name,
            netns=f"{prefix}h{i}",
            address=address,
            port=f"h{i}",
            bridge=bridge,
            zone=zone,
            region=th.region if th is not None else None,
        )
    plan = LabPlan(
        lab_id=lab_id,
        subnet=spec.subnet,
        switch=f"{prefix}sw",
        bridges=tuple(bridges),
        hosts=hosts,
        links=tuple(links),
        backend=spec.links.backend,
        default_host=default_host,
        control=HostPlan(
            name="lab-control",
            netns=f"{prefix}ctl",
            address=str(ipaddress.IPv4Network(spec.subnet).broadcast_address - 1),
            port="ctl",
            bridge=CORE_BRIDGE,
        ),
    )
    _check_names(plan)
    return plan


def crossing_impairments(spec: LabSpec) -> tuple[Impairment, Impairment]:
    """Per crossing of a zone link and of a region link, from the file's end-to-end figures."""
    z, r = spec.links.zone, spec.links.region
    zone = Impairment(z.latency_ms / 2, z.jitter_ms / 2, _half_loss(z.loss_pct, 0.0))
    region = Impairment(
        (r.latency_ms - z.latency_ms) / 2,
        (r.jitter_ms - z.jitter_ms) / 2,
        _half_loss(r.loss_pct, z.loss_pct),
    )
    return zone, region


def _half_loss(total_pct: float, already_pct: float) -> float:
    """Loss per crossing so that two crossings after `already_pct` lose `total_pct` in all."""
    kept = (1 - total_pct / 100) / (1 - already_pct / 100)
    return round((1 - math.sqrt(kept)) * 100, 6)


def _addresses(subnet: str, count: int) -> list[str]:
    net = ipaddress.IPv4Network(subnet)
    first = int(net.network_address) + FIRST_HOST_OFFSET
    last = int(net.broadcast_address) - 1 - RESERVED_TOP
    if first + count - 1 > last:
        raise LabError(
            f"lab subnet {subnet} is too small for {count} hosts (addresses start at "
            f".{FIRST_HOST_OFFSET} and the top {RESERVED_TOP} are kept for virtual IPs); "
            "give `lab: {subnet: ...}` a larger range"
        )
    return [str(ipaddress.IPv4Address(first + i)) for i in range(count)]


def _check_names(plan: LabPlan) -> None:
    """Guard the invariants every later step relies on (a bug here is ours, not the user's)."""
    switch_names = [*plan.bridges, *(h.port for h in plan.machines())]
    switch_names += [n for lk in plan.links for n in (lk.lower, lk.upper)]
    assert len(set(switch_names)) == len(switch_names), switch_names
    for name in [*switch_names, *plan.namespaces]:
        assert len(name) <= IFNAMSIZ, name
    assert len(set(plan.namespaces)) == len(plan.namespaces)


def lab_topology(topology: Topology, plan: LabPlan) -> Topology:
    """The topology as it runs in the lab: every host at its lab address.

    Instances placed on no host are placed on the lab's default host, so that every
    instance runs in a namespace and `Topology.address_of` gives its in-lab address.
    """
    data = copy.deepcopy(dict(topology.data))
    hosts = dict(data.get("hosts") or {})
    for name, hp in plan.hosts.items():
        spec = dict(hosts.get(name) or {})
        spec["address"] = hp.address
        hosts[name] = spec
    data["hosts"] = hosts
    if plan.default_host is not None:
        components = dict(data["components"])
        for cname, comp in components.items():
            if isinstance(comp, dict) and isinstance(comp.get("instances"), int):
                comp = {**comp, "instances": [plan.default_host] * comp["instances"]}
                components[cname] = comp
        data["components"] = components
    return topology_from_data(data, source=topology.source, locations=topology.locations)


def with_backend(plan: LabPlan, backend: str) -> LabPlan:
    """The plan with its link backend settled (`auto` resolved at apply time)."""
    return replace(plan, backend=backend)
