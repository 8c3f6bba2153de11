"""What `up` will run on this machine: a pure function of the topology and the options.

`plan_stack` picks the instances the topology places on the chosen hosts,
expands their commands, ports, health checks and files, and lists the
components it cannot run with the reason. Nothing here touches the system;
`_preflight.py` checks the plan against the machine.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spofless.stack._errors import StackError
from spofless.topology import (
    Component,
    EtcdComponent,
    HealthCheck,
    Instance,
    ServiceComponent,
    Topology,
)


@dataclass(frozen=True, slots=True)
class EtcdMember:
    """One member of an etcd cluster as the topology places it (input to the argv builder)."""

    name: str
    ip: str
    client_port: int
    peer_port: int


@dataclass(frozen=True, slots=True)
class EtcdMemberSpec:
    """Everything needed to build one etcd member's command line."""

    member: EtcdMember
    cluster: tuple[EtcdMember, ...]  # every member, this one included, in file order
    cluster_token: str
    data_dir: Path


# Builds the etcd command line of one member; spofless.dcs.etcd_server's in production.
EtcdArgv = Callable[[EtcdMemberSpec], Sequence[str]]


@dataclass(frozen=True, slots=True)
class InstancePlan:
    """One instance to run: its command, ports, health check and files."""

    component: str
    index: int
    host: str | None
    kind: str
    argv: tuple[str, ...]
    env: Mapping[str, str]  # added to spofless's own environment
    cwd: Path
    bind_ip: str
    ports: tuple[tuple[str, int], ...]  # (what, port), main port first
    address: str | None  # ip:port of the main port (Topology.address_of)
    health: HealthCheck | None  # None: up as soon as the process runs
    log_path: Path
    needs: tuple[str, ...]
    data_dir: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.component}/{self.index}"


@dataclass(frozen=True, slots=True)
class Skipped:
    component: str
    reason: str

    def __str__(self) -> str:
        return f"skipping {self.component}: {self.reason}"


@dataclass(frozen=True, slots=True)
class StackPlan:
    """The instances to run, in start order (dependencies first), and what is skipped."""

    topology: Topology = field(repr=False)
    hosts: tuple[str, ...]  # the hosts this machine plays; () = all
    state_dir: Path
    instances: tuple[InstancePlan, ...]
    skipped: tuple[Skipped, ...]

    def instance(self, name: str) -> InstancePlan:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)


# etcd's own health endpoint; the body check catches a member without quorum
# (it answers 503 or {"health":"false"}).
ETCD_HEALTH = HealthCheck(type="http", path="/health", expect_body='"health":"true"')


def log_path(state_dir: Path, component: str, index: int) -> Path:
    return state_dir / "logs" / f"{component}-{index}.log"


def plan_stack(
    topology: Topology,
    state_dir: Path,
    hosts: Sequence[str] = (),
    etcd_argv: EtcdArgv | None = None,
    cwd: Path | None = None,
) -> StackPlan:
    """The instances of `topology` placed on `hosts` (every instance when empty).

    Instances without a host (`instances: 3`) belong to no named host: they run
    only when no host is named. Raises StackError for an unknown host or a
    port two instances would share.
    """
    for h in hosts:
        if h not in topology.hosts:
            known = ", ".join(topology.hosts) or "none"
            raise StackError(f"--host {h}: no such host in {topology.source} (hosts: {known})")
    chosen = set(hosts)
    cwd = cwd or (topology.file.parent if topology.file else Path.cwd())
    instances: list[InstancePlan] = []
    skipped: list[Skipped] = []
    for cname in topology.dependency_order():
        comp = topology.components[cname]
        mine = [i for i in topology.instances[cname] if not chosen or i.host in chosen]
        reason = _cannot_run(comp, etcd_argv)
        if reason is not None:
            if mine:
                skipped.append(Skipped(cname, reason))
            continue
        for inst in mine:
            instances.append(_plan_instance(topology, comp, inst, state_dir, cwd, etcd_argv))
    _check_port_clashes(instances)
    return StackPlan(topology, tuple(hosts), state_dir, tuple(instances), tuple(skipped))


def _cannot_run(comp: Component, etcd_argv: EtcdArgv | None) -> str | None:
    if isinstance(comp, ServiceComponent):
        return None if comp.run else "kind service without `run:` is described, not run"
    if isinstance(comp, EtcdComponent):
        if comp.port is None or comp.peer_port is None:
            return "kind etcd needs `port` (client) and `peer_port` to be run"
        if etcd_argv is None:
            return "no etcd member command available"
        return None
    if comp.kind in ("postgres", "load_balancer", "dns"):
        return f"spofless cannot run kind {comp.kind} yet (analysis only)"
    return f"kind {comp.kind} is analysis only"


def _plan_instance(
    topology: Topology,
    comp: Component,
    inst: Instance,
    state_dir: Path,
    cwd: Path,
    etcd_argv: EtcdArgv | None,
) -> InstancePlan:
    ip = topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1"
    data_dir: Path | None = None
    if isinstance(comp, ServiceComponent):
        assert comp.run is not None
        port = comp.port + inst.index if comp.port is not None else None
        values = {
            "port": "" if port is None else str(port),
            "host": ip,
            "index": str(inst.index),
            "state_dir": str(state_dir),
        }
        argv = tuple(word.format(**values) for word in shlex.split(comp.run))
        ports: tuple[tuple[str, int], ...] = () if port is None else (("main", port),)
        env: Mapping[str, str] = dict(comp.env)
        health = comp.health or (HealthCheck(type="tcp") if port is not None else None)
    else:
        assert isinstance(comp, EtcdComponent) and etcd_argv is not None
        assert comp.port is not None and comp.peer_port is not None
        cluster = tuple(
            EtcdMember(
                f"{i.component}-{i.index}",
                topology.hosts[i.host].address if i.host is not None else "127.0.0.1",
                comp.port + i.index,
                comp.peer_port + i.index,
            )
            for i in topology.instances[inst.component]
        )
        data_dir = state_dir / "data" / f"{inst.component}-{inst.index}"
        spec = EtcdMemberSpec(
            cluster[inst.index], cluster, f"{topology.name}-{inst.component}", data_dir
        )
        argv = tuple(etcd_argv(spec))
        ports = (("client", comp.port + inst.index), ("peer", comp.peer_port + inst.index))
        env = {}
        health = comp.health or ETCD_HEALTH
    return InstancePlan(
        component=inst.component,
        index=inst.index,
        host=inst.host,
        kind=comp.kind,
        argv=argv,
        env=env,
        cwd=cwd,
        bind_ip=ip,
        ports=ports,
        address=topology.address_of(inst),
        health=health,
        log_path=log_path(state_dir, inst.component, inst.index),
        needs=tuple(comp.needs),
        data_dir=data_dir,
    )


def _check_port_clashes(instances: Sequence[InstancePlan]) -> None:
    owner: dict[tuple[str, int], str] = {}
    clashes: list[str] = []
    for inst in instances:
        for what, port in inst.ports:
            key = (inst.bind_ip, port)
            label = f"{inst.name} ({what})"
            if key in owner:
                clashes.append(f"port {inst.bind_ip}:{port} is given to {owner[key]} and {label}")
            else:
                owner[key] = label
    if clashes:
        raise StackError(
            "two instances would share a port on this machine:\n  "
            + "\n  ".join(clashes)
            + "\nchange `port`/`peer_port` so that every instance gets its own"
        )
