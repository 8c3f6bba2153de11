"""One monitor instance's settings, from the topology.

monitor_settings(topology, component, index, state_dir) -> MonitorSettings
history_path(state_dir, component, index) -> Path
dcs_settings(settings) -> DCSSettings     its etcd client's bounds
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from spofless.dcs import DCSSettings, EtcdTls
from spofless.monitor._receivers import read_secret
from spofless.security import etcd_client_tls
from spofless.topology import (
    CannotRunError,
    MonitorComponent,
    Topology,
    component_of,
    etcd_client_urls,
    etcd_component,
    instance_at,
    where,
)


@dataclass(frozen=True)
class MonitorSettings:
    """Everything one monitor instance needs, from the topology."""

    topology: Topology
    component: str
    index: int
    spec: MonitorComponent
    listen_ip: str
    listen_port: int  # 0: any free port
    etcd_urls: tuple[str, ...]
    etcd_tls: EtcdTls | None  # the CA and client certificate etcd requires (TLS on)
    prefix: str  # of its group's keys in etcd
    history_path: Path
    token: str | None = None  # every request to its API must carry it (beyond loopback)
    # Where `spofless up` keeps its state file (restarts, process ids): None, none is read.
    state_dir: Path | None = None

    @property
    def me(self) -> str:
        return f"{self.component}/{self.index}"


def history_path(state_dir: Path, component: str, index: int) -> Path:
    return state_dir / "monitor" / f"{component}-{index}.sqlite"


def monitor_settings(
    topology: Topology, component: str, index: int, state_dir: Path, port: int | None = None
) -> MonitorSettings:
    """The settings of monitor `component`/`index`; CannotRunError naming what is missing."""
    spec = component_of(topology, component, MonitorComponent)
    inst = instance_at(topology, component, index)
    etcd = etcd_component(topology, spec.dcs, (component,), "dcs")
    ip = topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1"
    if port is None:
        port = spec.port + index if spec.port is not None else 0
    token = read_secret(spec.token_file, spec.token_env, f"{component} API token")
    if token is None and not ipaddress.ip_address(ip).is_loopback:
        raise CannotRunError(
            f"{where(topology, component)}: {component}/{index} listens on {ip}, beyond "
            "loopback: give its API a bearer token with token_file or token_env"
        )
    return MonitorSettings(
        topology=topology,
        component=component,
        index=index,
        spec=spec,
        listen_ip=ip,
        listen_port=port,
        etcd_urls=etcd_client_urls(topology, etcd),
        etcd_tls=etcd_client_tls(topology),
        prefix=f"/spofless/{topology.name}/monitor/{component}",
        history_path=history_path(state_dir, component, index),
        token=token,
        state_dir=state_dir,
    )


def dcs_settings(settings: MonitorSettings) -> DCSSettings:
    # request_timeout: a claim sent to a member whose leader was just killed waits (the
    # member forwards it to the dead leader) until this runs out; then the next member
    # is tried, which knows the new leader once etcd's election (0.5-1 s) is over. A
    # quarter second keeps that wait short of the election, and above a write's time
    # on a busy machine; a timed-out claim that was applied is found as this monitor's
    # own and taken again (`_claim`).
    return DCSSettings(
        ttl=5, renew_interval=1.0, request_timeout=0.25, retry_timeout=1.0, tls=settings.etcd_tls
    )
