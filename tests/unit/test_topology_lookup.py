"""The lookups every runtime part makes in a topology, and their messages."""

from __future__ import annotations

import pytest

from spofless.topology import (
    CannotRunError,
    EtcdComponent,
    LoadBalancerComponent,
    Topology,
    TopologyError,
    component_of,
    etcd_client_urls,
    etcd_component,
    instance_at,
    load_topology_text,
    vip_claim_key,
    where,
)

TOPOLOGY = """\
name: shop
hosts: {a: {address: 10.0.0.1}, b: {address: 10.0.0.2}, c: {address: 10.0.0.3}}
components:
  etcd: {kind: etcd, instances: [a, b, c], port: 2379}
  other: {kind: etcd, instances: [a], port: 3379}
  noport: {kind: etcd, instances: [a]}
  app: {kind: service, instances: [a, b], port: 8000}
  lb: {kind: load_balancer, instances: [a, b], port: 80, routes: [{to: app}]}
entry: [lb]
"""


@pytest.fixture
def topology() -> Topology:
    return load_topology_text(TOPOLOGY, "shop.yaml")


def test_component_of_the_right_kind(topology: Topology) -> None:
    assert component_of(topology, "lb", LoadBalancerComponent).port == 80


def test_component_missing_or_of_another_kind(topology: Topology) -> None:
    with pytest.raises(CannotRunError) as missing:
        component_of(topology, "web", LoadBalancerComponent)
    assert str(missing.value) == (
        "shop.yaml: no load_balancer component 'web' (load_balancer components: lb)"
    )
    with pytest.raises(CannotRunError, match=r"'app'; app is kind service \(etcd components: "):
        component_of(topology, "app", EtcdComponent)


def test_instance_bounds(topology: Topology) -> None:
    assert instance_at(topology, "lb", 1).name == "lb/1"
    with pytest.raises(CannotRunError, match=r"shop.yaml:\d+:\d+: lb has instances 0..1, not 2"):
        instance_at(topology, "lb", 2)
    with pytest.raises(CannotRunError, match="not -1"):
        instance_at(topology, "lb", -1)


def test_etcd_client_urls(topology: Topology) -> None:
    assert etcd_client_urls(topology, "etcd") == (
        "https://10.0.0.1:2379",
        "https://10.0.0.2:2380",
        "https://10.0.0.3:2381",
    )
    plain = load_topology_text(TOPOLOGY + "security: {tls: false}\n", "shop.yaml")
    assert etcd_client_urls(plain, "etcd")[0] == "http://10.0.0.1:2379"
    with pytest.raises(CannotRunError, match="etcd component noport needs a `port`"):
        etcd_client_urls(topology, "noport")


def test_the_deciding_etcd_is_named_or_the_only_one(topology: Topology) -> None:
    assert etcd_component(topology, "other", ("lb",), "vip.dcs") == "other"
    with pytest.raises(CannotRunError, match=r"name the etcd component that decides in `vip.dcs`"):
        etcd_component(topology, None, ("lb",), "vip.dcs")
    with pytest.raises(CannotRunError, match=r"vip\.dcs: no etcd component 'app'"):
        etcd_component(topology, "app", ("lb",), "vip.dcs")
    single = load_topology_text(TOPOLOGY.replace("  other:", "  #").replace("  noport:", "  #"))
    assert etcd_component(single, None, ("lb",), "vip.dcs") == "etcd"


def test_claim_key_and_where(topology: Topology) -> None:
    assert vip_claim_key(topology, "lb") == "/spofless/shop/vip/lb"
    assert where(topology, "lb") == "shop.yaml:8:3"
    assert where(topology, "nothing") == "shop.yaml:3:1"  # the nearest written parent


def test_cannot_run_is_a_topology_error() -> None:
    assert isinstance(CannotRunError("x"), TopologyError) and str(CannotRunError("x")) == "x"
