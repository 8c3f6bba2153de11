"""Checks `up` makes before it starts anything, so that a refusal changes nothing."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

import psutil

from spofless.stack._errors import PortInUseError, SpofFoundError, StackError
from spofless.stack._plan import InstancePlan, StackPlan
from spofless.stack._process import instance_env
from spofless.stack._vip import AGENT_SUFFIX
from spofless.topology import Topology


def check_spof(topology: Topology, allow_spof: bool) -> str | None:
    """Run `spofless check`'s analysis; raise SpofFoundError unless the topology has no SPOF.

    With `allow_spof` the findings are returned (to be printed as a warning) instead.
    """
    from spofless.analysis import analyze, render

    report = analyze(topology)
    if report.ok:
        return None
    text: str = render(report, "text")
    if allow_spof:
        return text
    raise SpofFoundError(
        f"{topology.source} has a single point of failure; spofless does not run it.\n"
        f"{text.rstrip()}\n"
        "Fix the topology, or pass --allow-spof to run it anyway."
    )


def check_commands(plan: StackPlan) -> None:
    """Every instance's program exists and is executable (names file:line when not)."""
    problems: list[str] = []
    seen: set[str] = set()
    for inst in plan.instances:
        if inst.component in seen:
            continue
        seen.add(inst.component)
        program = inst.argv[0]
        path = instance_env(inst.env).get("PATH", os.defpath)
        if "/" in program:
            target = program if os.path.isabs(program) else str(inst.cwd / program)
            ok = os.path.isfile(target) and os.access(target, os.X_OK)
        else:
            ok = shutil.which(program, path=path) is not None
        if not ok:
            field = "run" if inst.kind == "service" else "kind"
            where = plan.topology.location_of("components", inst.component, field)
            problems.append(
                f"{where}: components.{inst.component}.{field}: command '{program}' "
                + ("is not an executable file" if "/" in program else "not found on PATH")
            )
    if problems:
        raise StackError("cannot start:\n  " + "\n  ".join(problems))


def check_settings(plan: StackPlan) -> None:
    """spofless's own parts accept their settings (each would refuse to start otherwise)."""
    from spofless.dns import dns_settings
    from spofless.errors import SpoflessError
    from spofless.lb import lb_settings

    problems: list[str] = []
    for inst in plan.instances:
        try:
            if inst.kind == "load_balancer":
                lb_settings(plan.topology, inst.component, inst.index)
            elif inst.kind == "dns":
                dns_settings(plan.topology, inst.component, inst.index)
            elif inst.kind == "postgres":
                _check_postgres(plan, inst)
                comp = plan.topology.components[inst.component]
                if getattr(comp, "backup", None) is not None:
                    from spofless.backup import backup_config

                    # The key file and repositories its archiving (or WAL relay) uses.
                    backup_config(plan.topology, inst.component)
            elif inst.kind == "etcd":
                _check_etcd(plan, inst)
            elif inst.kind == "backup":
                from spofless.backup import backup_config

                backup_config(plan.topology, inst.component.removesuffix("-backup"))
            elif inst.kind == "cache":
                from spofless.cache import cache_settings

                cache_settings(plan.topology, inst.component, inst.index, plan.state_dir)
            elif inst.kind == "vip":
                from spofless.vip import vip_settings

                lb = inst.component.removesuffix(AGENT_SUFFIX)
                vip_settings(plan.topology, lb, inst.index)
        except SpoflessError as exc:
            problems.append(f"{inst.name}: {exc}")
    vips = [inst.name for inst in plan.instances if inst.kind == "vip"]
    if vips and plan.lab is None and not _can_manage_addresses():
        problems.append(
            f"{', '.join(vips)}: a floating VIP needs CAP_NET_ADMIN to add its address; "
            "run up as root"
        )
    if problems:
        raise StackError("cannot start:\n  " + "\n  ".join(problems))


def _check_etcd(plan: StackPlan, inst: InstancePlan) -> None:
    """With TLS: the member's host certificate, valid for its address (issued here when
    the CA key is at hand), and the client certificate the stack checks it with."""
    from spofless.security import etcd_client_tls, host_cert, security_spec

    if security_spec(plan.topology).tls:
        host_cert(plan.topology, inst.host)
        etcd_client_tls(plan.topology)
    _check_etcd_scheme(inst)


def _check_etcd_scheme(inst: InstancePlan) -> None:
    """A member's data directory keeps its peers' URLs: one made while they spoke http
    never forms a cluster over https (nor the other way round). Say so before starting."""
    from spofless.stack._etcd import data_scheme, peer_scheme

    if inst.data_dir is None:
        return
    made = data_scheme(inst.data_dir)
    now = peer_scheme(inst.argv)
    if made is not None and made != now:
        raise StackError(
            f"its data directory {inst.data_dir} was made while the members "
            f"spoke {made}; now they would speak {now} (`security: tls`), and etcd keeps its "
            f"peers' URLs, so they would never form a cluster: remove {inst.data_dir} and "
            "the other members' (their keys are lost; the PostgreSQL and VIP agents write "
            "theirs again), or set `security: tls` back"
        )


def _check_postgres(plan: StackPlan, inst: InstancePlan) -> None:
    """What the agent would exit on at once, or PostgreSQL crash-loop on: the agent's
    settings, its etcd, PostgreSQL's binaries and OS user, a data directory already
    there that is foreign or owned by another user, and a data directory the OS user
    cannot reach. No side effect: constructing the server only looks."""
    from spofless.pg import PostgresServer, agent_settings, etcd_endpoints
    from spofless.pg._osuser import resolve_os_user

    settings = agent_settings(plan.topology, inst.component, inst.index, plan.state_dir)
    etcd_endpoints(plan.topology, inst.component)
    server = PostgresServer(settings.server)
    server.has_data()
    user = resolve_os_user(settings.server.os_user)
    if user is not None:
        blocked = " ".join(str(d) for d in unreachable_dirs(settings.server.data_dir, user))
        if blocked:
            raise StackError(
                f"OS user {user.pw_name} cannot reach {settings.server.data_dir}: make the "
                f"directories on the way traversable (chmod o+x {blocked}) "
                "or choose another --state-dir"
            )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unreachable_dirs(path: Path, user: pwd.struct_passwd, umask: int | None = None) -> list[Path]:
    """The directories on the way to `path` that `user` may not search, from the root.

    Directories that do not exist yet count as `up` will create them: owned by this
    process's user, with the mode its `umask` leaves.
    """
    mask = _umask() if umask is None else umask
    blocked = []
    for d in reversed(path.parents):
        try:
            st = d.stat()
        except FileNotFoundError:
            mode, uid, gid = 0o777 & ~mask, os.geteuid(), os.getegid()
        else:
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        if user.pw_uid == uid:
            ok = mode & 0o100
        elif user.pw_gid == gid:
            ok = mode & 0o010
        else:
            ok = mode & 0o001
        if not ok:
            blocked.append(d)
    return blocked


def _can_manage_addresses() -> bool:
    """Whether this process holds CAP_NET_ADMIN (which adding a VIP needs)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 12 & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def check_ports(instances: Iterable[InstancePlan]) -> None:
    """Every port is free on its address; else PortInUseError naming port, instance and owner."""
    taken: list[str] = []
    for inst in instances:
        for what, port in inst.ports:
            problem = bind_problem(inst.bind_ip, port)
            if problem is not None:
                taken.append(f"{inst.bind_ip}:{port} ({inst.name} {what} port): {problem}")
    if taken:
        raise PortInUseError(
            "cannot start: ports are not available:\n  "
            + "\n  ".join(taken)
            + "\nstop what holds them or change the ports in the topology"
        )


def bind_problem(ip: str, port: int) -> str | None:
    """Why `ip:port` cannot be listened on now (`in use by pid N (name)`, ...), or None."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As servers do, so that connections in TIME_WAIT do not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"in use by {port_owner(port)}"
            if exc.errno == errno.EADDRNOTAVAIL:
                return (
                    f"{ip} is not an address of this machine "
                    "(name the hosts this machine plays with --host)"
                )
            return exc.strerror or str(exc)
    return None


def port_owner(port: int) -> str:
    """Who listens on `port`, as well as this process may tell ("pid 12 (nginx)")."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return "another process"
    pids = sorted(
        {
            c.pid
            for c in conns
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
        }
    )
    if not pids:
        return "another process (not visible to this user)"
    names = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline()[:4]) or proc.name()
        except psutil.Error:
            cmd = "?"
        names.append(f"pid {pid} ({cmd})")
    return ", ".join(names)


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def ephemeral_port_warning(
    instances: Iterable[InstancePlan],
    range_file: Path = EPHEMERAL_RANGE,
    reserved_file: Path = RESERVED_PORTS,
) -> str | None:
    """A warning when listening ports lie in this machine's ephemeral port range, where
    the kernel picks the local port of outgoing connections: one of them may hold the
    port while its instance restarts, and the instance then cannot listen (an etcd
    member killed by a drill could not come back). None when no port is at risk."""
    try:
        low, high = (int(x) for x in range_file.read_text().split())
        reserved = _port_set(reserved_file.read_text() if reserved_file.exists() else "")
    except (OSError, ValueError):
        return None
    at_risk: dict[str, list[int]] = {}
    for inst in instances:
        for what, port in inst.ports:
            if low <= port <= high and port not in reserved:
                at_risk.setdefault(f"{inst.component}'s {what} port", []).append(port)
    if not at_risk:
        return None
    spans = {what: _spans(ports) for what, ports in at_risk.items()}
    return (
        "ports in this machine's ephemeral port range "
        f"{low}-{high} (net.ipv4.ip_local_port_range): "
        + "; ".join(f"{what} {span}" for what, span in spans.items())
        + ". An outgoing connection may hold one while its instance restarts, which then "
        f"cannot listen: use ports below {low}, or reserve these: sysctl -w "
        "net.ipv4.ip_local_reserved_ports=" + ",".join(spans.values())
    )


def _port_set(text: str) -> set[int]:
    """`8080,9000-9100` -> the ports it names."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part.strip():
            continue
        a, _, b = part.strip().partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _spans(ports: list[int]) -> str:
    """[5, 6, 7, 9] -> "5-7,9"."""
    out: list[str] = []
    ordered = sorted(set(ports))
    start = prev = ordered[0]
    for p in [*ordered[1:], None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ",".join(out)


def preflight(plan: StackPlan, allow_spof: bool) -> str | None:
    """Everything `up` checks before starting; returns SPOF findings allowed by --allow-spof."""
    warning = check_spof(plan.topology, allow_spof)
    if not plan.instances:
        raise StackError(
            "nothing to run: no instance of a kind spofless runs is placed on "
            + (", ".join(plan.hosts) if plan.hosts else "any host")
        )
    check_commands(plan)
    check_settings(plan)
    if plan.lab is None:  # a lab's namespaces are new: nothing else can hold their ports
        check_ports(plan.instances)
    return warning
