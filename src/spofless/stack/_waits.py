"""What a component waits for before it starts: its needs, healthy, wherever they run.

A dependency is waited for when spofless runs its kind and can check it (it has
a port): `needs: [etcd]` waits for the etcd component's `min_up` members to
pass their health check, whether those members run under this supervisor or
on another machine (`--host`). That is how several machines coordinate their
startup: only through the services themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spofless.stack._plan import ETCD_HEALTH
from spofless.topology import EtcdComponent, HealthCheck, ServiceComponent, Topology


@dataclass(frozen=True, slots=True)
class DependencyWait:
    component: str
    dependency: str
    kind: str
    required: int
    addresses: tuple[tuple[str, int], ...]
    check: HealthCheck

    def describe(self) -> str:
        return (
            f"{self.component} needs {self.dependency}: {self.required} of "
            f"{len(self.addresses)} healthy at {_list(self.addresses)}"
        )

    def failure(self, healthy: int, waited: float) -> str:
        what = "members" if self.kind == "etcd" else "instances"
        return (
            f"{self.component} needs {self.dependency}, but only {healthy} of "
            f"{len(self.addresses)} {what} were healthy (it needs {self.required}) after "
            f"{waited:g}s at {_list(self.addresses)}; {self.dependency} is unreachable or "
            f"unhealthy (start it first, or check its log)"
        )


def _list(addresses: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{ip}:{port}" for ip, port in addresses)


def dependency_waits(topology: Topology, component: str) -> list[DependencyWait]:
    """The waits before `component` starts, one per dependency spofless can check."""
    out: list[DependencyWait] = []
    for dep in topology.components[component].needs:
        comp = topology.components[dep]
        if isinstance(comp, EtcdComponent) and comp.port is not None:
            check = comp.health or ETCD_HEALTH
        elif isinstance(comp, ServiceComponent) and comp.run and comp.port is not None:
            check = comp.health or HealthCheck(type="tcp")
        else:
            continue
        addresses = []
        for inst in topology.instances[dep]:
            address = topology.address_of(inst)
            assert address is not None
            ip, port = address.rsplit(":", 1)
            addresses.append((ip, int(port)))
        out.append(
            DependencyWait(component, dep, comp.kind, comp.required_up, tuple(addresses), check)
        )
    return out
