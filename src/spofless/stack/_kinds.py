"""Each kind the stack runs: whether it can, its command line, ports and health check.

    cannot_run(comp, ctx)              None, or why `up` skips the component
    launch(topology, inst, ctx)        one instance's command, ports, env, health
    instance_health(topology, inst)    the check the supervisor runs on an instance and
                                       that a component needing it waits for

spofless's own runtime parts (`load_balancer`, `dns`, `postgres`, `monitor`, `cache`) run as
`python -m spofless <part> FILE --component C --instance I`: the same command a user
types to run one by hand, reading its settings from the same file (a postgres
instance is `spofless pg agent ...`, which runs PostgreSQL as its child; a cache
instance `spofless cache agent ...`, which runs Redis). Pure:
nothing here touches the system.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spofless.dcs import EtcdTls
from spofless.security import etcd_client_tls, etcd_member_tls
from spofless.topology import (
    CacheComponent,
    Component,
    DnsComponent,
    EtcdComponent,
    HealthCheck,
    Instance,
    LoadBalancerComponent,
    MonitorComponent,
    PostgresComponent,
    ServiceComponent,
    Topology,
)

# The spofless command line children run: this interpreter, so a virtualenv's spofless.
SPOFLESS = (sys.executable, "-m", "spofless")

# etcd's own health endpoint; the body check catches a member without quorum
# (it answers 503 or {"health":"false"}).
ETCD_HEALTH = HealthCheck(type="http", path="/health", expect_body='"health":"true"')

# The load balancer's admin API answers /status from its controller process.
LB_ADMIN_HEALTH = HealthCheck(type="http", path="/status")

# A PostgreSQL agent's API: 200 while its PostgreSQL runs, whatever its role.
PG_AGENT_HEALTH = HealthCheck(type="http", path="/health")
# A cache agent's API answers /health the same way (while its Redis answers).
CACHE_AGENT_HEALTH = PG_AGENT_HEALTH

# A monitor answers /status from the loop that looks at the system.
MONITOR_HEALTH = HealthCheck(type="http", path="/status")


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
    tls: EtcdTls | None = None  # this member's host certificate: https, client certificates


# Builds the etcd command line of one member; spofless.dcs.etcd_server's in production.
EtcdArgv = Callable[[EtcdMemberSpec], Sequence[str]]


@dataclass(frozen=True, slots=True)
class KindContext:
    """What building command lines needs besides the topology."""

    state_dir: Path
    # The file spofless's own parts read (absolute): the topology's, or in the lab the
    # lab's copy of it with every host at its lab address.
    topology_file: Path | None
    etcd_argv: EtcdArgv


@dataclass(frozen=True, slots=True)
class Launch:
    argv: tuple[str, ...]
    ports: tuple[tuple[str, int], ...]  # (what, port), main port first
    env: Mapping[str, str]
    data_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class InstanceHealth:
    check: HealthCheck
    ip: str
    port: int  # 0: a command check without a port
    tls: EtcdTls | None = None  # an http check over TLS with this client certificate


def host_ip(topology: Topology, inst: Instance) -> str:
    return topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1"


def cannot_run(comp: Component, ctx: KindContext) -> str | None:
    """Why the stack cannot run `comp`, or None when it can."""
    if isinstance(comp, ServiceComponent):
        return None if comp.run else "kind service without `run:` is described, not run"
    if isinstance(comp, EtcdComponent):
        if comp.port is None or comp.peer_port is None:
            return "kind etcd needs `port` (client) and `peer_port` to be run"
        return None
    if isinstance(comp, LoadBalancerComponent):
        if comp.port is None or not comp.routes:
            return "kind load_balancer needs `port` and `routes` to be run"
        if ctx.topology_file is None:
            return "a load balancer reads its settings from a topology file, and there is none"
        return None
    if isinstance(comp, DnsComponent):
        if comp.port is None or comp.zone is None or not comp.records:
            return "kind dns needs `port`, `zone` and `records` to be run"
        if ctx.topology_file is None:
            return "a DNS server reads its settings from a topology file, and there is none"
        return None
    if isinstance(comp, PostgresComponent):
        if comp.port is None or comp.api_port is None:
            return "kind postgres needs `port` (SQL) and `api_port` (the agent's API) to be run"
        if ctx.topology_file is None:
            return "a PostgreSQL agent reads its settings from a topology file, and there is none"
        return None
    if isinstance(comp, MonitorComponent):
        if ctx.topology_file is None:
            return "a monitor reads its settings from a topology file, and there is none"
        return None
    if isinstance(comp, CacheComponent):
        if comp.port is None or comp.api_port is None:
            return "kind cache needs `port` (Redis) and `api_port` (the agent's API) to be run"
        if ctx.topology_file is None:
            return "a cache agent reads its settings from a topology file, and there is none"
        return None
    return f"kind {comp.kind} is analysis only"


def launch(topology: Topology, inst: Instance, ctx: KindContext) -> Launch:
    """The command, ports and environment of one instance of a kind `cannot_run` accepts."""
    comp = topology.components[inst.component]
    if isinstance(comp, ServiceComponent):
        return _service(topology, comp, inst, ctx)
    if isinstance(comp, EtcdComponent):
        return _etcd(topology, comp, inst, ctx)
    if isinstance(comp, LoadBalancerComponent):
        return _load_balancer(comp, inst, ctx)
    if isinstance(comp, DnsComponent):
        assert comp.port is not None
        # One port for UDP and TCP; the stack checks (and health-checks) its TCP side.
        return Launch(own_part("dns", inst, ctx), (("main", comp.port + inst.index),), {})
    if isinstance(comp, PostgresComponent):
        return _postgres(comp, inst, ctx)
    if isinstance(comp, MonitorComponent):
        argv = (*own_part("monitor", inst, ctx), "--state-dir", str(ctx.state_dir))
        ports = () if comp.port is None else (("main", comp.port + inst.index),)
        return Launch(argv, ports, {})
    if isinstance(comp, CacheComponent):
        return _cache(comp, inst, ctx)
    raise AssertionError(f"no launcher for kind {comp.kind}")


def instance_health(topology: Topology, inst: Instance) -> InstanceHealth | None:
    """How an instance's health is checked; None when it is not (no check, no port)."""
    comp = topology.components[inst.component]
    ip = host_ip(topology, inst)
    port = getattr(comp, "port", None)
    main = port + inst.index if port is not None else None
    if isinstance(comp, ServiceComponent):
        if comp.health is not None:
            return InstanceHealth(comp.health, ip, main or 0)
        return None if main is None else InstanceHealth(HealthCheck(type="tcp"), ip, main)
    if isinstance(comp, EtcdComponent):
        if main is None:
            return None
        # With TLS a member answers only clients presenting a certificate from the CA.
        return InstanceHealth(
            comp.health or ETCD_HEALTH, ip, main, etcd_client_tls(topology, check=False)
        )
    if isinstance(comp, LoadBalancerComponent):
        if main is None:
            return None
        main = lb_port(comp, inst)
        if comp.health is not None:
            return InstanceHealth(comp.health, ip, main)
        # The admin API is answered by the controller, which runs the workers; without
        # it (or behind a token the check cannot send), a connect to the listener.
        if comp.admin_port is not None and not comp.admin_token:
            return InstanceHealth(LB_ADMIN_HEALTH, ip, comp.admin_port + inst.index)
        return InstanceHealth(HealthCheck(type="tcp"), ip, main)
    if isinstance(comp, DnsComponent):
        # The server answers over TCP from the same process that answers over UDP.
        check = comp.health or HealthCheck(type="tcp")
        return None if main is None else InstanceHealth(check, ip, main)
    if isinstance(comp, PostgresComponent):
        if comp.api_port is None:
            return None
        # The agent's /health (its own `health:` would not say which port it means).
        return InstanceHealth(PG_AGENT_HEALTH, ip, comp.api_port + inst.index)
    if isinstance(comp, MonitorComponent):
        if main is None:
            return None
        # Behind a token the check cannot send: a connect to its port.
        has_token = comp.token_file is not None or comp.token_env is not None
        return InstanceHealth(HealthCheck(type="tcp") if has_token else MONITOR_HEALTH, ip, main)
        return None
    if isinstance(comp, CacheComponent):
        if comp.api_port is None:
            return None
        return InstanceHealth(CACHE_AGENT_HEALTH, ip, comp.api_port + inst.index)
    return None


def _service(
    topology: Topology, comp: ServiceComponent, inst: Instance, ctx: KindContext
) -> Launch:
    assert comp.run is not None
    port = comp.port + inst.index if comp.port is not None else None
    argv = run_argv(topology, inst, ctx.state_dir, comp.run)
    ports: tuple[tuple[str, int], ...] = () if port is None else (("main", port),)
    return Launch(argv, ports, {**service_env(inst, ctx), **comp.env})


def service_env(inst: Instance, ctx: KindContext) -> dict[str, str]:
    """What `up` tells a service's command besides its placeholders: which instance it
    is and the topology file spofless's own parts read (in the lab, the lab's copy, with
    every host at its lab address), so that it can find what it `needs` (a database's
    members, a cache's load balancers) the way spofless.client does."""
    env = {"SPOFLESS_COMPONENT": inst.component, "SPOFLESS_INSTANCE": str(inst.index)}
    if ctx.topology_file is not None:
        env["SPOFLESS_TOPOLOGY"] = str(ctx.topology_file)
    return env


def run_argv(
    topology: Topology, inst: Instance, state_dir: Path, run: str, port: int | None = None
) -> tuple[str, ...]:
    """A service's `run:` command for one instance: {port} {host} {index} {state_dir}
    replaced (`spofless rollout --run` expands its command the same way). {port} is
    `port` when given (a temporary instance's), else the component's port + index.

    ValueError for a placeholder other than those four, or an unbalanced quote."""
    comp = topology.components[inst.component]
    base = getattr(comp, "port", None)
    if port is None and base is not None:
        port = base + inst.index
    values = {
        "port": "" if port is None else str(port),
        "host": host_ip(topology, inst),
        "index": str(inst.index),
        "state_dir": str(state_dir),
    }
    try:
        return tuple(word.format(**values) for word in shlex.split(run))
    except KeyError as exc:
        raise ValueError(
            f"unknown placeholder {{{exc.args[0]}}}: use {{port}} {{host}} {{index}} {{state_dir}}"
        ) from None
    except IndexError:
        raise ValueError("a positional placeholder {} : name it ({port}, {host}, ...)") from None


def _etcd(topology: Topology, comp: EtcdComponent, inst: Instance, ctx: KindContext) -> Launch:
    assert comp.port is not None and comp.peer_port is not None
    cluster = tuple(
        EtcdMember(
            f"{i.component}-{i.index}",
            host_ip(topology, i),
            comp.port + i.index,
            comp.peer_port + i.index,
        )
        for i in topology.instances[inst.component]
    )
    data_dir = ctx.state_dir / "data" / f"{inst.component}-{inst.index}"
    spec = EtcdMemberSpec(
        cluster[inst.index],
        cluster,
        f"{topology.name}-{inst.component}",
        data_dir,
        etcd_member_tls(topology, inst.host),
    )
    ports = (("client", comp.port + inst.index), ("peer", comp.peer_port + inst.index))
    return Launch(tuple(ctx.etcd_argv(spec)), ports, {}, data_dir)


def own_part(part: str, inst: Instance, ctx: KindContext) -> tuple[str, ...]:
    assert ctx.topology_file is not None
    return (
        *SPOFLESS,
        *part.split(),
        str(ctx.topology_file),
        "--component",
        inst.component,
        "--instance",
        str(inst.index),
    )


def vip_argv(inst: Instance, ctx: KindContext) -> tuple[str, ...]:
    """The floating-address agent beside load balancer instance `inst` (see _vip.py)."""
    return own_part("vip", inst, ctx)


def lb_port(comp: LoadBalancerComponent, inst: Instance) -> int:
    """A load balancer instance's listening port: `port + i`, or `port` for every instance
    sharing a `vip:` (each on its own host: a client of the VIP knows one port)."""
    assert comp.port is not None
    return comp.port if comp.vip is not None else comp.port + inst.index


def _load_balancer(comp: LoadBalancerComponent, inst: Instance, ctx: KindContext) -> Launch:
    ports: list[tuple[str, int]] = [("main", lb_port(comp, inst))]
    if comp.admin_port is not None:
        ports.append(("admin", comp.admin_port + inst.index))
    return Launch(own_part("lb", inst, ctx), tuple(ports), {})


def _postgres(comp: PostgresComponent, inst: Instance, ctx: KindContext) -> Launch:
    """The agent of one instance; it makes (initdb, clone) and owns its data directory,
    `<state dir>/data/<component>-<i>`, so the stack does not create it."""
    assert comp.port is not None and comp.api_port is not None
    argv = (*own_part("pg agent", inst, ctx), "--state-dir", str(ctx.state_dir))
    ports = (("main", comp.port + inst.index), ("api", comp.api_port + inst.index))
    return Launch(argv, ports, {})


def _cache(comp: CacheComponent, inst: Instance, ctx: KindContext) -> Launch:
    """The agent of one Redis instance; it runs Redis as its child in
    `<state dir>/data/<component>-<i>`."""
    assert comp.port is not None and comp.api_port is not None
    argv = (*own_part("cache agent", inst, ctx), "--state-dir", str(ctx.state_dir))
    ports = (("main", comp.port + inst.index), ("api", comp.api_port + inst.index))
    return Launch(argv, ports, {})
