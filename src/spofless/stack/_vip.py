"""Floating addresses in the stack: a `spofless vip` agent beside each load balancer instance.

    vip_instances(topology, lb, instances, ...)   the agents to plan, or why they are skipped
    vip_roles(claim, agents)                      who holds the address, from the claim (pure)
    read_claim(key, endpoints, tls)               the claims in etcd, for `status`

A load balancer component with `vip:` gets one more supervised instance per
load balancer instance, named `<lb>-vip/<i>`, running `spofless vip FILE
--component <lb> --instance <i>` in that instance's host namespace. Only in the
lab (`up --lab`): an address that floats between hosts needs hosts with their own
network; on one machine's loopback the agents would fight over one interface.
Who holds the address is etcd's claim (spofless.vip), read once a second: its
agent shows `holder`, the others `standby`, and the holding load balancer
instance shows `vip-holder`. With per-region addresses (`vip: {addresses:
...}`) each region has its own claim, below the component's key, and one
holder.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spofless.dcs import EtcdTls
from spofless.security import etcd_client_tls
from spofless.topology import (
    CannotRunError,
    Instance,
    LoadBalancerComponent,
    Topology,
    etcd_client_urls,
    etcd_component,
    vip_claim_key,
)

if TYPE_CHECKING:
    from spofless.stack._plan import InstancePlan

AGENT_SUFFIX = "-vip"
KIND = "vip"


@dataclass(frozen=True, slots=True)
class VipAgentSpec:
    """One planned agent: which load balancer instance it serves, the VIP's ip:port."""

    lb: Instance
    component: str  # `<lb>-vip`
    address: str  # the VIP and the load balancers' shared port: what clients reach
    needs: tuple[str, ...]  # the etcd component that decides (waited for before start)
    key: str  # the claim's etcd key


def agent_component(lb: str) -> str:
    return f"{lb}{AGENT_SUFFIX}"


def deciding_etcd(topology: Topology, lb: str) -> str | None:
    """The etcd component that decides `lb`'s VIP; None when the topology does not say
    (the agent's own settings check then says what is wrong)."""
    comp = topology.components[lb]
    assert isinstance(comp, LoadBalancerComponent) and comp.vip is not None
    try:
        return etcd_component(topology, comp.vip.dcs, (lb, "vip"), "vip.dcs")
    except CannotRunError:
        return None


def claim_endpoints(topology: Topology, lb: str) -> tuple[str, ...]:
    """Where to read `lb`'s claim: its deciding etcd's client URLs (none when unknown)."""
    etcd = deciding_etcd(topology, lb)
    try:
        return etcd_client_urls(topology, etcd) if etcd is not None else ()
    except CannotRunError:
        return ()


def vip_agents(topology: Topology, lb: str, instances: Sequence[Instance]) -> list[VipAgentSpec]:
    """The agents for the chosen `instances` of load balancer `lb` (which has a vip)."""
    comp = topology.components[lb]
    assert isinstance(comp, LoadBalancerComponent) and comp.vip is not None
    assert comp.port is not None
    etcd = deciding_etcd(topology, lb)
    out = []
    for inst in instances:
        # Per region: the address of the instance's region (the topology checks that
        # every instance has one).
        region = topology.hosts[inst.host].region if inst.host is not None else None
        cidr = comp.vip.address_in(region)
        assert cidr is not None
        out.append(
            VipAgentSpec(
                lb=inst,
                component=agent_component(lb),
                address=f"{ipaddress.IPv4Interface(cidr).ip}:{comp.port}",
                needs=(etcd,) if etcd is not None else (),
                key=vip_claim_key(topology, lb, region if comp.vip.per_region else None),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ClaimView:
    """What the claim key says: the claiming load balancer instance (`lb/0`) and its state."""

    instance: str
    state: str  # pending, holding, released


def vip_roles(
    claims: ClaimView | Sequence[ClaimView] | None, lb: str, indexes: Sequence[int]
) -> dict[str, str]:
    """Roles for the agents `<lb>-vip/<i>` and the load balancer instances `<lb>/<i>`,
    from the claim, or from each region's claim with per-region addresses."""
    if claims is None:
        claims = ()
    elif isinstance(claims, ClaimView):
        claims = (claims,)
    by_instance = {c.instance: c for c in claims}
    roles: dict[str, str] = {}
    for i in indexes:
        claim = by_instance.get(f"{lb}/{i}")
        agent = f"{agent_component(lb)}/{i}"
        if claim is None:
            roles[agent] = "standby"
        elif claim.state == "holding":
            roles[agent] = "holder"
            roles[f"{lb}/{i}"] = "vip-holder"
        else:
            roles[agent] = claim.state  # pending: elected, adding; released: handing over
    return roles


async def read_claim(
    key: str, endpoints: Sequence[str], tls: EtcdTls | None = None
) -> tuple[ClaimView, ...]:
    """The claims in etcd (`tls`: the client certificate members with TLS require): the
    one at `key`, or with per-region addresses each region's below it; () when there is
    none. Raises DCSError when etcd does not answer, OSError when a certificate file
    cannot be read."""
    from spofless.dcs import DCSSettings, EtcdStore
    from spofless.vip import Claim

    # Bounds for a loaded etcd (status reads once a second; a read that times out shows
    # nobody holding): a second per member, 1.5 in all.
    settings = DCSSettings(request_timeout=1.0, retry_timeout=1.5, tls=tls)
    store = EtcdStore(list(endpoints), settings)
    try:
        # One read: the key itself and the region keys below it (`<key>/<region>`).
        found = await store.range(key, prefix=True)
    finally:
        await store.close()
    out = []
    for kv in found.kvs:
        if kv.key == key or kv.key.startswith(key + "/"):
            claim = Claim.decode(kv.value, kv.create_revision, kv.mod_revision)
            out.append(ClaimView(claim.instance, claim.state))
    return tuple(out)


def vip_components(instances: Sequence[InstancePlan]) -> dict[str, list[int]]:
    """Load balancer component -> the indexes of the VIP agents among `instances`."""
    out: dict[str, list[int]] = {}
    for inst in instances:
        if inst.kind == KIND:
            out.setdefault(inst.component.removesuffix(AGENT_SUFFIX), []).append(inst.index)
    return out


def of_vip(name: str, lb: str) -> bool:
    """Whether `name` is an instance of load balancer `lb` or of its VIP agents."""
    return name.rpartition("/")[0] in (lb, lb + AGENT_SUFFIX)


async def follow_claim(
    topology: Topology,
    lb: str,
    indexes: list[int],
    seen: Callable[[str, dict[str, str]], None],
    every: float = 1.0,
) -> None:
    """Who holds `lb`'s floating address, from its claim in etcd: `seen(lb, roles)` every
    `every` seconds (no roles while etcd does not answer: nobody can tell, nor hold for
    long), until cancelled."""
    from spofless.dcs import DCSError

    urls = claim_endpoints(topology, lb)
    key = vip_claim_key(topology, lb)
    tls = etcd_client_tls(topology, check=False)
    while urls:
        try:
            roles = vip_roles(await read_claim(key, urls, tls), lb, indexes)
        except (DCSError, OSError):
            roles = {}
        seen(lb, roles)
        await asyncio.sleep(every)
