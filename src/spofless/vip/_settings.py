"""What one VIP agent needs, built from the topology (the one source of truth)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spofless.dcs import DCSSettings
from spofless.topology import EtcdComponent, LoadBalancerComponent, Topology, VipSpec
from spofless.vip._errors import VipConfigError


@dataclass(frozen=True)
class VipConfig:
    """One agent: which instance it is, its address, its load balancer, where etcd is."""

    instance: str  # "<component>/<index>", also the claim's name
    spec: VipSpec
    key: str  # the etcd key of the claim
    endpoints: tuple[str, ...]  # etcd client URLs
    lb_host: str  # where this instance's load balancer answers its check
    lb_port: int

    @property
    def address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.spec.address)

    def dcs_settings(self) -> DCSSettings:
        """The lease under the claim: renewed well within lease_ttl; requests bounded by
        the hold time, since a renewal slower than that is of no use."""
        request = min(0.5, max(0.1, self.spec.hold_time))
        return DCSSettings(
            ttl=self.spec.lease_ttl,
            renew_interval=self.spec.lease_ttl / 6,
            request_timeout=request,
            retry_timeout=request,
            safety_margin=self.spec.lease_ttl / 6,
        )


def config_from_topology(topology: Topology, component: str, index: int) -> VipConfig:
    """The config of the VIP agent beside instance `index` of load balancer `component`."""
    comp = topology.components.get(component)
    where = _where(topology, component)
    if not isinstance(comp, LoadBalancerComponent):
        lbs = [n for n, c in topology.components.items() if isinstance(c, LoadBalancerComponent)]
        raise VipConfigError(
            f"{topology.source}: no load_balancer component {component!r}"
            f" (load balancers: {', '.join(lbs) or 'none'})"
        )
    if comp.vip is None:
        raise VipConfigError(f"{where}: {component} has no `vip:`")
    instances = topology.instances[component]
    if not 0 <= index < len(instances):
        raise VipConfigError(
            f"{where}: {component} has instances 0..{len(instances) - 1}, not {index}"
        )
    hosts = [i.host for i in instances]
    if None in hosts or len(set(hosts)) != len(hosts):
        raise VipConfigError(
            f"{where}: the instances of {component} float one address between hosts: "
            f"place each on a different host (instances: {hosts})"
        )
    me = instances[index]
    address = topology.address_of(me)
    if address is None:
        raise VipConfigError(f"{where}: {component} needs a `port`")
    host, _, port = address.rpartition(":")
    return VipConfig(
        instance=me.name,
        spec=comp.vip,
        key=f"/spofless/{topology.name}/vip/{component}",
        endpoints=_etcd_endpoints(topology, component, comp.vip),
        lb_host=host,
        lb_port=int(port),
    )


def _etcd_endpoints(topology: Topology, component: str, spec: VipSpec) -> tuple[str, ...]:
    where = _where(topology, component, "vip")
    etcds = [n for n, c in topology.components.items() if isinstance(c, EtcdComponent)]
    name = spec.dcs
    if name is None:
        if len(etcds) != 1:
            found = ", ".join(etcds) or "none"
            raise VipConfigError(
                f"{where}: a vip is decided by etcd: name the etcd component in `vip.dcs` "
                f"(etcd components: {found})"
            )
        name = etcds[0]
    elif name not in etcds:
        raise VipConfigError(f"{where}: vip.dcs: no etcd component {name!r}")
    urls = []
    for inst in topology.instances[name]:
        addr = topology.address_of(inst)
        if addr is None:
            raise VipConfigError(f"{_where(topology, name)}: etcd component {name} needs a `port`")
        urls.append(f"http://{addr}")
    return tuple(urls)


def _where(topology: Topology, *path: str | int) -> str:
    loc = topology.location_of("components", *path)
    return str(loc) if loc else topology.source
