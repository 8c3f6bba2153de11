"""What one VIP agent needs, built from the topology (the one source of truth)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

from spofless.dcs import DCSSettings, EtcdTls
from spofless.security import SecretsError, etcd_client_tls
from spofless.topology import (
    CannotRunError,
    LoadBalancerComponent,
    Topology,
    VipSpec,
    component_of,
    etcd_client_urls,
    etcd_component,
    instance_at,
    vip_claim_key,
    where,
)


class VipSettings(BaseModel):
    """One agent: which instance it is, its address, its load balancer, where etcd is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance: str  # "<component>/<index>", also the claim's name
    spec: VipSpec
    cidr: str  # the address this agent floats, with its prefix: the one, or its region's
    key: str  # the etcd key of the claim (per region with per-region addresses)
    endpoints: tuple[str, ...]  # etcd client URLs
    etcd_tls: EtcdTls | None = None  # with TLS: the CA and the certificate etcd requires
    lb_host: str  # where this instance's load balancer answers its check
    lb_port: int

    @property
    def address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.cidr)

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
            tls=self.etcd_tls,
        )


def vip_settings(topology: Topology, component: str, index: int) -> VipSettings:
    """The settings of the VIP agent beside instance `index` of load balancer `component`."""
    comp = component_of(topology, component, LoadBalancerComponent)
    at = where(topology, component)
    if comp.vip is None:
        raise CannotRunError(f"{at}: {component} has no `vip:`")
    me = instance_at(topology, component, index)
    region = topology.hosts[me.host].region if me.host is not None else None
    cidr = comp.vip.address_in(region)
    if cidr is None:
        raise CannotRunError(f"{at}: {me.name} is in no region of `vip.addresses`")
    # Per region, the address floats between that region's instances only.
    peers = [
        i.host
        for i in topology.instances[component]
        if not comp.vip.per_region or (i.host and topology.hosts[i.host].region == region)
    ]
    if None in peers or len(set(peers)) != len(peers):
        raise CannotRunError(
            f"{at}: the instances of {component} float one address between hosts: "
            f"place each on a different host (instances: {peers})"
        )
    address = topology.address_of(me)
    if address is None:
        raise CannotRunError(f"{at}: {component} needs a `port`")
    host, _, port = address.rpartition(":")
    etcd = etcd_component(topology, comp.vip.dcs, (component, "vip"), "vip.dcs")
    try:
        etcd_tls = etcd_client_tls(topology)
    except SecretsError as exc:
        raise CannotRunError(str(exc)) from None
    return VipSettings(
        instance=me.name,
        spec=comp.vip,
        cidr=cidr,
        key=vip_claim_key(topology, component, region if comp.vip.per_region else None),
        endpoints=etcd_client_urls(topology, etcd),
        etcd_tls=etcd_tls,
        lb_host=host,
        lb_port=int(port),
    )
