"""Generate the scale topology: 10,000 instances, 50 components, 1,000 hosts, 30 zones, 3 regions.

A realistic mix for a large shop: 5 entry points (DNS and load balancers),
30 stateless services, 5 caches that must keep two thirds of their capacity,
5 replicated databases and 5 etcd-style clusters of 5 (majority). Instances
are spread round-robin over the hosts, each component starting at its own
offset, so every zone and region carries a share of most components.
Deterministic: the same file every time.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml_dump

REGIONS = 3
ZONES_PER_REGION = 10
HOSTS = 1_000


def topology() -> dict[str, Any]:
    regions = {
        f"r{r}": {"zones": [f"z{z}" for z in range(ZONES_PER_REGION)]} for r in range(REGIONS)
    }
    zones = [f"r{r}/z{z}" for z in range(ZONES_PER_REGION) for r in range(REGIONS)]
    hosts = {f"h{h:04d}": {"zone": zones[h % len(zones)]} for h in range(HOSTS)}
    names = list(hosts)
    components: dict[str, Any] = {}
    offset = 0

    def place(name: str, kind: str, count: int, stride: int = 1, **extra: Any) -> None:
        nonlocal offset
        components[name] = {
            "kind": kind,
            "instances": [names[(offset + i * stride) % HOSTS] for i in range(count)],
            **extra,
        }
        offset += 37

    for i in range(5):  # consensus clusters of 5, one member per zone in 3 regions
        place(f"etcd-{i}", "etcd", 5, stride=7, min_up="majority")
    for i in range(5):  # databases: a primary and two replicas in three regions
        place(f"db-{i}", "postgres", 3, stride=11, needs=[f"etcd-{i}"])
    for i in range(5):  # caches: 100 instances, at least half needed for the load
        place(f"cache-{i}", "cache", 100, min_up=50)
    services = [f"svc-{i:02d}" for i in range(30)]
    remaining = 10_000 - len(components) * 0 - 5 * 5 - 5 * 3 - 5 * 100 - 5 * 4
    per_service = remaining // len(services)
    for i, name in enumerate(services):
        count = per_service + (1 if i < remaining % len(services) else 0)
        place(name, "service", count, needs=[f"db-{i % 5}", f"cache-{i % 5}"])
    for i in range(5):  # entry points: DNS and load balancers, 4 each
        place(f"lb-{i}", "load_balancer", 4, stride=13, needs=services[i * 6 : i * 6 + 6])
    return {
        "name": "scale",
        "regions": regions,
        "hosts": hosts,
        "components": components,
        "entry": [f"lb-{i}" for i in range(5)],
    }


if __name__ == "__main__":
    yaml_dump.dump(topology(), sys.stdout)
