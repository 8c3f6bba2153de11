"""What a component waits for before it starts: its needs, healthy, wherever they run.

A dependency is waited for when spofless runs its kind and can check it (it has
a port): `needs: [etcd]` waits for the etcd component's `min_up` members to
pass their health check, whether those members run under this supervisor or
on another machine (`--host`). That is how several machines coordinate their
startup: only through the services themselves.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from spofless.dcs import EtcdTls
from spofless.stack._kinds import instance_health
from spofless.topology import HealthCheck, Topology

logger = logging.getLogger(__name__)


def client_context(tls: EtcdTls | None, what: str) -> ssl.SSLContext | None:
    """The TLS context of `what`'s checks; None without TLS, or when a certificate file
    cannot be read (said once here; the checks then fail, which `status` shows)."""
    if tls is None:
        return None
    try:
        return tls.client_context()
    except OSError as exc:
        logger.error("%s: cannot check over TLS: %s (%s)", what, exc, tls.cert)
        return None


@dataclass(frozen=True, slots=True)
class DependencyWait:
    component: str
    dependency: str
    kind: str
    required: int
    addresses: tuple[tuple[str, int], ...]
    check: HealthCheck
    tls: EtcdTls | None = None  # the check over TLS with this client certificate

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


def dependency_waits(
    topology: Topology, component: str, needs: Sequence[str] | None = None
) -> list[DependencyWait]:
    """The waits before `component` starts, one per dependency spofless can check.

    Each instance of a dependency is checked the way the supervisor running it
    checks it (`_kinds.instance_health`); a dependency without a port is not waited for.
    `needs` (default: the component's) names them for parts the file does not list as
    components (a load balancer's VIP agents need etcd).
    """
    out: list[DependencyWait] = []
    for dep in topology.components[component].needs if needs is None else needs:
        comp = topology.components[dep]
        healths = [instance_health(topology, inst) for inst in topology.instances[dep]]
        if not healths or any(h is None or h.port == 0 for h in healths):
            continue
        checks = [h for h in healths if h is not None]
        addresses = tuple((h.ip, h.port) for h in checks)
        out.append(
            DependencyWait(
                component,
                dep,
                comp.kind,
                comp.required_up,
                addresses,
                checks[0].check,
                checks[0].tls,
            )
        )
    return out
