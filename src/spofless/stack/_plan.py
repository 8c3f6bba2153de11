"""What `up` will run on this machine: a pure function of the topology and the options.

`plan_stack` picks the instances the topology places on the chosen hosts,
expands their commands, ports, health checks and files, and lists the
components it cannot run with the reason. Nothing here touches the system;
`_preflight.py` checks the plan against the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

from spofless.dcs import EtcdTls
from spofless.stack._errors import StackError
from spofless.stack._etcd import member_argv
from spofless.stack._kinds import (
    ETCD_HEALTH,
    EtcdArgv,
    EtcdMember,
    EtcdMemberSpec,
    KindContext,
    cannot_run,
    host_ip,
    instance_health,
    launch,
    own_part,
    vip_argv,
)
from spofless.stack._vip import KIND as VIP_KIND
from spofless.stack._vip import agent_component, vip_agents
from spofless.topology import HealthCheck, LoadBalancerComponent, PostgresComponent, Topology

__all__ = [
    "ETCD_HEALTH",
    "EtcdArgv",
    "EtcdMember",
    "EtcdMemberSpec",
    "InstancePlan",
    "Skipped",
    "StackPlan",
    "Wrap",
    "plan_stack",
]

# The words put before an instance's command so that it runs where its host is
# (in the lab: `ip netns exec <the host's namespace>`), given the host.
Wrap = Callable[[str | None], Sequence[str]]


@dataclass(frozen=True, slots=True)
class InstancePlan:
    """One instance to run: its command, ports, health check and files."""

    component: str
    index: int
    host: str | None
    kind: str
    argv: tuple[str, ...]  # the program and its arguments
    env: Mapping[str, str]  # added to spofless's own environment
    cwd: Path
    bind_ip: str
    ports: tuple[tuple[str, int], ...]  # (what, port), main port first
    address: str | None  # ip:port of the main port (Topology.address_of)
    health: HealthCheck | None  # None: up as soon as the process runs
    log_path: Path
    needs: tuple[str, ...]
    data_dir: Path | None = None
    health_port: int = 0  # where `health` is checked (on bind_ip); 0: a command check
    wrapper: tuple[str, ...] = ()  # runs `argv` where its host is (the lab's netns exec)
    health_tls: EtcdTls | None = None  # `health` over TLS with this client certificate

    @property
    def name(self) -> str:
        return f"{self.component}/{self.index}"

    @property
    def command(self) -> tuple[str, ...]:
        """What the supervisor executes: `argv`, wrapped to run on its host."""
        return (*self.wrapper, *self.argv)


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
    lab: str | None = None  # the lab id when the plan runs in the lab (`up --lab`)

    def instance(self, name: str) -> InstancePlan:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def stop_waves(self, last: Set[str] = frozenset()) -> list[list[str]]:
        """The instances' names in the order to stop them, one wave at a time.

        Dependents first (the reverse of the start order, one component per wave),
        so a PostgreSQL agent stops its server and frees its lease while etcd still
        answers; within a component, the instances named in `last` (etcd's leader:
        alone it stops at once, with its peers stopping it waits on a leadership
        transfer) in a wave of their own after the others.
        """
        waves: list[list[str]] = []
        for component in reversed(dict.fromkeys(i.component for i in self.instances)):
            names = [i.name for i in self.instances if i.component == component]
            for wave in ([n for n in names if n not in last], [n for n in names if n in last]):
                if wave:
                    waves.append(wave)
        return waves


def pg_data_dir(state_dir: Path, inst: InstancePlan) -> Path:
    """Where a postgres instance's agent keeps its data (spofless.pg.agent_settings' layout)."""
    return state_dir / "data" / f"{inst.component}-{inst.index}"


def log_path(state_dir: Path, component: str, index: int) -> Path:
    return state_dir / "logs" / f"{component}-{index}.log"


def plan_stack(
    topology: Topology,
    state_dir: Path,
    hosts: Sequence[str] = (),
    etcd_argv: EtcdArgv = member_argv,
    cwd: Path | None = None,
    topology_file: Path | None = None,
    wrap: Wrap | None = None,
    lab: str | None = None,
    check_clashes: bool = True,
) -> StackPlan:
    """The instances of `topology` placed on `hosts` (every instance when empty).

    Instances without a host (`instances: 3`) belong to no named host: they run
    only when no host is named. spofless's own parts read `topology_file` (default:
    the topology's file); `wrap` makes each command run where its host is. Raises
    StackError for an unknown host or, with `check_clashes`, a port two instances
    would share (not asked before a lab gives each host its own address).
    """
    for h in hosts:
        if h not in topology.hosts:
            known = ", ".join(topology.hosts) or "none"
            raise StackError(f"--host {h}: no such host in {topology.source} (hosts: {known})")
    chosen = set(hosts)
    cwd = cwd or (topology.file.parent if topology.file else Path.cwd())
    if topology_file is None and topology.file is not None:
        topology_file = topology.file.resolve()
    ctx = KindContext(state_dir, topology_file, etcd_argv)
    instances: list[InstancePlan] = []
    skipped: list[Skipped] = []
    for cname in topology.dependency_order():
        comp = topology.components[cname]
        mine = [i for i in topology.instances[cname] if not chosen or i.host in chosen]
        reason = cannot_run(comp, ctx)
        if reason is not None:
            if mine:
                skipped.append(Skipped(cname, reason))
            continue
        for inst in mine:
            how = launch(topology, inst, ctx)
            health = instance_health(topology, inst)
            wrapper = tuple(wrap(inst.host)) if wrap is not None else ()
            instances.append(
                InstancePlan(
                    component=inst.component,
                    index=inst.index,
                    host=inst.host,
                    kind=comp.kind,
                    argv=how.argv,
                    env=how.env,
                    cwd=cwd,
                    bind_ip=host_ip(topology, inst),
                    ports=how.ports,
                    address=topology.address_of(inst),
                    health=health.check if health else None,
                    log_path=log_path(state_dir, inst.component, inst.index),
                    needs=tuple(comp.needs),
                    data_dir=how.data_dir,
                    health_port=health.port if health else 0,
                    wrapper=wrapper,
                    health_tls=health.tls if health else None,
                )
            )
    instances += _vip_agents(topology, chosen, ctx, wrap, lab, cwd, skipped)
    instances += _backup_schedulers(topology, chosen, ctx, wrap, cwd, skipped)
    if check_clashes:
        _check_port_clashes(instances)
    return StackPlan(topology, tuple(hosts), state_dir, tuple(instances), tuple(skipped), lab)


def _vip_agents(
    topology: Topology,
    chosen: set[str],
    ctx: KindContext,
    wrap: Wrap | None,
    lab: str | None,
    cwd: Path,
    skipped: list[Skipped],
) -> list[InstancePlan]:
    """A `spofless vip` agent beside each planned instance of a load balancer with `vip:`,
    last in the start order (after etcd, which decides, and the load balancers)."""
    out: list[InstancePlan] = []
    not_run = {s.component for s in skipped}
    for cname, comp in topology.components.items():
        if not isinstance(comp, LoadBalancerComponent) or comp.vip is None or cname in not_run:
            continue
        mine = [i for i in topology.instances[cname] if not chosen or i.host in chosen]
        if not mine:
            continue
        if lab is None:
            skipped.append(
                Skipped(
                    agent_component(cname),
                    f"the floating address {comp.vip.address or comp.vip.addresses} of "
                    f"{cname} needs the lab "
                    "(`up --lab`, Linux, root: each host its own network); "
                    f"{cname} runs without it",
                )
            )
            continue
        for spec in vip_agents(topology, cname, mine):
            inst = spec.lb
            out.append(
                InstancePlan(
                    component=spec.component,
                    index=inst.index,
                    host=inst.host,
                    kind=VIP_KIND,
                    argv=vip_argv(inst, ctx),
                    env={},
                    cwd=cwd,
                    bind_ip=host_ip(topology, inst),
                    ports=(),
                    address=spec.address,
                    health=None,
                    log_path=log_path(ctx.state_dir, spec.component, inst.index),
                    needs=spec.needs,
                    wrapper=tuple(wrap(inst.host)) if wrap is not None else (),
                )
            )
    return out


BACKUP_KIND = "backup"
BACKUP_SUFFIX = "-backup"


def _backup_schedulers(
    topology: Topology,
    chosen: set[str],
    ctx: KindContext,
    wrap: Wrap | None,
    cwd: Path,
    skipped: list[Skipped],
) -> list[InstancePlan]:
    """A `spofless backup run` beside each planned instance of a postgres component whose
    `backup:` has a schedule, last in the start order; the one beside the instance a
    backup copies from takes it (spofless.backup._scheduler)."""
    out: list[InstancePlan] = []
    not_run = {s.component for s in skipped}
    for cname, comp in topology.components.items():
        if not isinstance(comp, PostgresComponent) or comp.backup is None or cname in not_run:
            continue
        sched = comp.backup.schedule
        if sched.full is None and sched.incremental is None and sched.drill is None:
            continue
        for inst in [i for i in topology.instances[cname] if not chosen or i.host in chosen]:
            argv = (*own_part("backup run", inst, ctx), "--state-dir", str(ctx.state_dir))
            out.append(
                InstancePlan(
                    component=cname + BACKUP_SUFFIX,
                    index=inst.index,
                    host=inst.host,
                    kind=BACKUP_KIND,
                    argv=argv,
                    env={},
                    cwd=cwd,
                    bind_ip=host_ip(topology, inst),
                    ports=(),
                    address=None,
                    health=None,
                    log_path=log_path(ctx.state_dir, cname + BACKUP_SUFFIX, inst.index),
                    needs=(cname,),
                    wrapper=tuple(wrap(inst.host)) if wrap is not None else (),
                )
            )
    return out


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
