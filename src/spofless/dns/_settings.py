"""The settings of one DNS instance, built once from the topology and checked there.

`dns_settings(topology, component, index)` is the only way to build them, for
`spofless dns` and for the stack runner alike. Everything that needs the rest of
the topology (the record's component exists and has a port, addresses match
instances, regions exist) is checked here and reported as a `CannotRunError`
naming file, line and field.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from spofless.topology import (
    CannotRunError,
    DnsComponent,
    DnsRateLimit,
    DnsRecordSpec,
    HealthCheck,
    LoadBalancerComponent,
    Problem,
    RuntimeComponent,
    Topology,
    component_of,
    field_path,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Frozen):
    """One instance a DNS name may answer with."""

    name: str  # `lb/0`: the key of its health in the health view
    address: IPAddress  # what the answer says (A or AAAA)
    region: str | None
    check_host: str  # where its health check goes
    check_port: int


class Pool(_Frozen):
    """The instances of one component and how to check them."""

    component: str
    health: HealthCheck
    members: tuple[Member, ...]


class NameServer(_Frozen):
    """One of the zone's NS names, with its addresses when it lies inside the zone."""

    name: str  # absolute, ends with '.'
    addresses: tuple[IPAddress, ...]


class DnsSettings(_Frozen):
    """Everything one DNS instance needs, validated."""

    instance: str  # `dns/0`, for logs
    listen_host: str
    port: Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (tests)
    zone: str  # absolute and lower case: `shop.example.`
    ttl: int
    records: dict[str, str]  # owner relative to the zone (`www`, `@`) -> pool component
    pools: dict[str, Pool]
    regions: dict[str, tuple[IPNetwork, ...]]
    nameservers: tuple[NameServer, ...]
    rate_limit: DnsRateLimit
    max_udp_payload: int
    # A TCP client idle this long is disconnected (RFC 7766 suggests seconds, not minutes).
    tcp_idle_timeout: Annotated[float, Field(gt=0)] = 10.0
    # Beyond this many open TCP connections new ones are closed at once.
    max_tcp_connections: Annotated[int, Field(ge=1)] = 256
    soa_serial: int = 1


def vip_members(lb: str, addresses: dict[str, str], port: int) -> tuple[Member, ...]:
    """One member per region of a load balancer with per-region VIPs: the region's VIP,
    checked through the VIP itself. A region whose every load balancer is down has no
    holder, its check fails, and its clients are answered with another region's VIP."""
    out = []
    for region, cidr in addresses.items():
        ip = ipaddress.IPv4Interface(cidr).ip
        out.append(
            Member(
                name=f"{lb}-vip/{region}",
                address=ip,
                region=region,
                check_host=str(ip),
                check_port=port,
            )
        )
    return tuple(out)


def dns_settings(
    topology: Topology, component: str, index: int, *, port: int | None = None
) -> DnsSettings:
    """Settings of instance `index` of the `kind: dns` component `component`.

    `port` overrides the instance's port (0 picks a free one); otherwise the
    component's `port + index`.
    """
    return _Builder(topology, component).build(index, port)


class _Builder:
    def __init__(self, topology: Topology, component: str) -> None:
        self.topology = topology
        self.name = component
        self.problems: list[Problem] = []

    def problem(self, message: str, *path: str | int) -> None:
        full = ("components", self.name, *path)
        where = self.topology.location_of(*full)
        self.problems.append(
            Problem(
                self.topology.source,
                where.line if where else 0,
                where.column if where else 0,
                field_path(full),
                message,
            )
        )

    def fail_if_problems(self) -> None:
        if self.problems:
            raise CannotRunError(self.problems)

    def build(self, index: int, port_override: int | None) -> DnsSettings:
        topo = self.topology
        comp = component_of(topo, self.name, DnsComponent)
        instances = topo.instances[self.name]
        if not 0 <= index < len(instances):
            # instance_at()'s words, collected with the rest rather than raised alone
            self.problem(f"has instances 0..{len(instances) - 1}, not {index}", "instances")
        if comp.zone is None:
            self.problem("missing required field 'zone' to run a DNS server (e.g. shop.example.)")
        if not comp.records:
            self.problem("give at least one name to answer, e.g. records: {www: lb}", "records")
        if port_override is None and comp.port is None:
            self.problem("missing required field 'port' to run a DNS server (e.g. 53)")
        self.fail_if_problems()
        assert comp.zone is not None

        zone = comp.zone.lower().rstrip(".") + "."
        pools: dict[str, Pool] = {}
        records: dict[str, str] = {}
        for owner, spec in comp.records.items():
            rec = spec if isinstance(spec, DnsRecordSpec) else DnsRecordSpec(component=spec)
            records[owner.lower()] = rec.component
            pool = self._pool(owner, rec)
            if pool is not None:
                if rec.component in pools and pools[rec.component] != pool:
                    self.problem(
                        f"component '{rec.component}' is named with different addresses "
                        "by two records; give them once",
                        "records",
                        owner,
                    )
                pools[rec.component] = pool
        for region in comp.regions:
            if region not in topo.regions:
                known = ", ".join(topo.regions) or "none in this file"
                self.problem(f"unknown region '{region}' (regions: {known})", "regions", region)
        nameservers = self._nameservers(comp, zone, records)
        self.fail_if_problems()

        me = instances[index]
        listen = topo.hosts[me.host].address if me.host is not None else "127.0.0.1"
        assert comp.port is not None or port_override is not None
        return DnsSettings(
            instance=me.name,
            listen_host=listen,
            port=port_override if port_override is not None else (comp.port or 0) + index,
            zone=zone,
            ttl=comp.ttl,
            records=records,
            pools=pools,
            regions={r: tuple(nets) for r, nets in comp.regions.items()},
            nameservers=nameservers,
            rate_limit=comp.rate_limit,
            max_udp_payload=comp.max_udp_payload,
        )

    def _pool(self, owner: str, rec: DnsRecordSpec) -> Pool | None:
        topo = self.topology
        target = topo.components.get(rec.component)
        where = ("records", owner)
        if target is None:
            self.problem(f"unknown component '{rec.component}'", *where)
            return None
        if not isinstance(target, RuntimeComponent) or target.port is None:
            self.problem(
                f"component '{rec.component}' has no port to health-check; give it `port:`",
                *where,
            )
            return None
        vip = target.vip if isinstance(target, LoadBalancerComponent) else None
        if vip is not None and vip.addresses is not None:
            if rec.addresses is not None:
                self.problem(
                    f"'{rec.component}' has per-region VIPs, which the name answers with: "
                    "drop `addresses`",
                    *where,
                    "addresses",
                )
                return None
            return Pool(
                component=rec.component,
                health=target.health or HealthCheck(),
                members=vip_members(rec.component, vip.addresses, target.port),
            )
        instances = topo.instances[rec.component]
        if rec.addresses is not None and len(rec.addresses) != len(instances):
            self.problem(
                f"{len(rec.addresses)} addresses for the {len(instances)} instances "
                f"of '{rec.component}': give one per instance, in order",
                *where,
                "addresses",
            )
            return None
        members = []
        for inst in instances:
            address = topo.address_of(inst)
            assert address is not None  # the component has a port
            host, _, port = address.rpartition(":")
            public: IPAddress
            if rec.addresses is not None:
                public = ipaddress.ip_address(rec.addresses[inst.index])
            else:
                try:
                    public = ipaddress.ip_address(host.strip("[]"))
                except ValueError:
                    self.problem(
                        f"{inst.name} listens on '{host}', not an IP address: "
                        "give the records' addresses",
                        *where,
                    )
                    continue
            region = topo.hosts[inst.host].region if inst.host is not None else None
            members.append(
                Member(
                    name=inst.name,
                    address=public,
                    region=region,
                    check_host=host.strip("[]"),
                    check_port=int(port),
                )
            )
        return Pool(
            component=rec.component,
            health=target.health or HealthCheck(),
            members=tuple(members),
        )

    def _nameservers(
        self, comp: DnsComponent, zone: str, records: dict[str, str]
    ) -> tuple[NameServer, ...]:
        topo = self.topology
        instances = topo.instances[self.name]
        names = comp.nameservers or [f"ns{i + 1}.{zone}" for i in range(len(instances))]
        out = []
        for j, raw in enumerate(names):
            name = raw.lower() if raw.endswith(".") else f"{raw.lower()}.{zone}"
            addresses: tuple[IPAddress, ...] = ()
            if name == zone or name.endswith("." + zone):
                relative = name[: -len(zone) - 1] or "@"
                if relative in records:
                    self.problem(f"'{raw}' is also a record's name", "nameservers", j)
                if j < len(instances):
                    inst = instances[j]
                    host = topo.hosts[inst.host].address if inst.host is not None else "127.0.0.1"
                    try:
                        addresses = (ipaddress.ip_address(host),)
                    except ValueError:
                        self.problem(
                            f"'{raw}' lies in the zone but {inst.name}'s host address "
                            f"'{host}' is not an IP address",
                            "nameservers",
                            j,
                        )
                else:
                    self.problem(
                        f"'{raw}' lies in the zone but there is no DNS instance {j} "
                        "to give it an address",
                        "nameservers",
                        j,
                    )
            out.append(NameServer(name=name, addresses=addresses))
        return tuple(out)
