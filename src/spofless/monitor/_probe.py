"""How the monitor looks at each instance: the part's own status API, as an operator would.

    targets(topology) -> [Target]           every instance the monitor can watch
    probe(target, bound, client) -> Observation   one look, bounded by `bound` seconds, never raises

Per kind:

    etcd           POST /v3/maintenance/status on its client port: the member answers
                   from its own state, without a consensus round, so a member stays up
                   through a leader election (the analysis, not each member's /health,
                   says when the cluster lost its quorum)
    postgres       GET /status on its agent's API: the writable leader or a streaming
                   replica is up; a replica that runs but does not stream is
                   `not streaming` (down for the analysis); a member cloning, rewinding
                   or recovering is `catching up` (down for the analysis, not failed);
                   its component's newest restore drill, when it has backups
    load_balancer  its admin /status (every backend's state: ejections and backends
                   marked down are events), else a connect (spofless.stack's check)
    service        its `health:` check, else a connect
    dns            a query for one of its records over UDP: an answer with addresses
    monitor        GET /status of the other monitors

Instances with nothing to look at (analysis-only kinds, no port) are not
targets: the monitor takes them to be up.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from spofless.dcs import EtcdTls
from spofless.health import run_check
from spofless.security import security_spec
from spofless.stack import instance_health
from spofless.topology import (
    DnsComponent,
    EtcdComponent,
    HealthCheck,
    Instance,
    LoadBalancerComponent,
    MonitorComponent,
    PostgresComponent,
    Topology,
)

State = Literal["up", "down", "catching up", "not streaming"]
# A PostgreSQL agent's states while it brings its member back (spofless.pg).
CATCHING_UP = frozenset(
    {"starting", "bootstrapping", "cloning", "rewinding", "re-cloning", "recovering"}
)


@dataclass(frozen=True, slots=True)
class Target:
    """One instance to watch and how."""

    instance: Instance
    how: Literal["check", "etcd", "postgres", "dns", "monitor", "lb"]
    ip: str
    port: int
    check: HealthCheck | None = None
    dns_name: str | None = None  # dns: the name asked
    token: str | None = None  # monitor: the bearer token its API wants
    https: bool = False  # etcd with TLS on: https, with the topology's client certificate

    @property
    def name(self) -> str:
        return self.instance.name


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at one instance."""

    ok: bool
    state: State
    detail: str
    definite: bool = False  # nothing listens (refused, reset): no need to wait for `fall`
    timed_out: bool = False  # no answer within the bound: doubted when the monitor is late
    facts: dict[str, Any] = field(default_factory=dict)  # role, leader, lag, ...
    at: float = 0.0


def targets(topology: Topology) -> list[Target]:
    out: list[Target] = []
    for inst in topology.all_instances():
        target = _target(topology, inst)
        if target is not None:
            out.append(target)
    return out


def _target(topology: Topology, inst: Instance) -> Target | None:
    comp = topology.components[inst.component]
    ip = topology.hosts[inst.host].address if inst.host is not None else "127.0.0.1"
    if isinstance(comp, PostgresComponent):
        if comp.api_port is None:
            return None
        return Target(inst, "postgres", ip, comp.api_port + inst.index)
    if isinstance(comp, MonitorComponent):
        if comp.port is None:
            return None
        return Target(inst, "monitor", ip, comp.port + inst.index)
    if (
        isinstance(comp, LoadBalancerComponent)
        and comp.admin_port is not None
        and comp.health is None
    ):
        # Its admin API is answered by the controller that runs the workers.
        port = comp.admin_port + inst.index
        return Target(inst, "lb", ip, port, token=comp.admin_token)
    if isinstance(comp, EtcdComponent):
        if comp.port is None:
            return None
        return Target(inst, "etcd", ip, comp.port + inst.index, https=security_spec(topology).tls)
    if isinstance(comp, DnsComponent) and comp.port is not None and comp.zone and comp.records:
        owner = next(iter(comp.records))
        zone = comp.zone.rstrip(".")
        name = f"{zone}." if owner == "@" else f"{owner}.{zone}."
        return Target(inst, "dns", ip, comp.port + inst.index, dns_name=name)
    health = instance_health(topology, inst)
    if health is None or health.port == 0:
        return None
    return Target(inst, "check", health.ip, health.port, check=health.check)


def http_client(tls: EtcdTls | None = None) -> httpx.AsyncClient:
    """One client for every look (each new client builds a TLS context: costly at 5 Hz).
    Plain HTTP on the parts' own ports; etcd over https with `tls` (the CA that verifies
    its members and the client certificate they require); no proxy from the environment."""
    verify: ssl.SSLContext | bool = tls.client_context() if tls is not None else True
    return httpx.AsyncClient(
        trust_env=False, verify=verify, limits=httpx.Limits(max_keepalive_connections=0)
    )


async def probe(target: Target, bound: float, client: httpx.AsyncClient) -> Observation:
    """Look at `target` once; every wait is bounded by `bound` seconds."""
    timeout = bound
    try:
        async with asyncio.timeout(timeout):
            if target.how == "postgres":
                return _postgres(await _get_json(client, target, "/status", timeout))
            if target.how == "etcd":
                return _etcd(await _post_json(client, target, "/v3/maintenance/status", bound))
            if target.how == "lb":
                return _lb(await _get_json(client, target, "/status", timeout))
            if target.how == "monitor":
                body = await _get_json(client, target, "/status", timeout)
                return Observation(True, "up", "answers", facts={"monitor": body})
            if target.how == "dns":
                return await _dns(target, timeout)
            assert target.check is not None
            spec = target.check.model_copy(update={"timeout": timeout})
            result = await run_check(spec, target.ip, target.port)
            state: State = "up" if result.ok else "down"
            # A check that ran its whole bound without a verdict timed out.
            waited = not result.ok and not result.definite and result.duration >= timeout
            return Observation(result.ok, state, result.detail, result.definite, waited)
    except TimeoutError:
        return Observation(False, "down", f"no answer within {timeout:g}s", timed_out=True)
    except httpx.TimeoutException as exc:
        return Observation(False, "down", _short(exc), timed_out=True)
    except (OSError, httpx.TransportError) as exc:
        return Observation(False, "down", _short(exc), definite=_nothing_listens(exc))
    except (ValueError, httpx.HTTPError) as exc:
        return Observation(False, "down", _short(exc))
    except Exception as exc:  # a look never raises: an answer it cannot read is a failure
        return Observation(False, "down", f"unreadable answer: {_short(exc)}")


def _nothing_listens(exc: BaseException) -> bool:
    """Refused or reset (also under httpx's wrapping): the host answered that nothing
    serves there, or the process died mid-answer."""
    if isinstance(exc, httpx.ConnectError):
        return True
    seen: BaseException | None = exc
    for _ in range(4):  # the cause chain is short; bounded all the same
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError | ConnectionResetError | BrokenPipeError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _get_json(
    client: httpx.AsyncClient, target: Target, path: str, bound: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    url = f"http://{target.ip}:{target.port}{path}"
    resp = await client.get(url, timeout=bound, headers=headers)
    body = json.loads(resp.text)
    if not isinstance(body, dict):
        raise ValueError(f"{path} answered {type(body).__name__}, not an object")
    return body


async def _post_json(
    client: httpx.AsyncClient, target: Target, path: str, bound: float
) -> dict[str, Any]:
    scheme = "https" if target.https else "http"
    url = f"{scheme}://{target.ip}:{target.port}{path}"
    resp = await client.post(url, content=b"{}", timeout=bound)
    resp.raise_for_status()
    body = json.loads(resp.text)
    if not isinstance(body, dict):
        raise ValueError(f"{path} answered {type(body).__name__}, not an object")
    return body


def _etcd(body: dict[str, Any]) -> Observation:
    """A member's status: up when it answers; whether it is the leader, and whether it
    knows one."""
    member = str(body.get("header", {}).get("member_id", ""))
    leader = str(body.get("leader", "0"))
    facts = {"etcd_leader": member != "" and member == leader, "has_leader": leader != "0"}
    errors = body.get("errors") or []
    if errors:
        return Observation(False, "down", "; ".join(map(str, errors)), facts=facts)
    return Observation(True, "up", "leader" if facts["etcd_leader"] else "member", facts=facts)


def _lb(body: dict[str, Any]) -> Observation:
    """A load balancer's admin /status: up when it answers; each backend's state."""
    states: dict[str, str] = {}
    for name, b in (body.get("backends") or {}).items():
        if not isinstance(b, dict):
            continue
        if b.get("ejected"):
            states[name] = "ejected"
        elif b.get("admin", "enabled") != "enabled":
            states[name] = str(b["admin"])
        else:
            states[name] = str(b.get("status", "unknown"))
    up = sum(1 for s in states.values() if s == "up")
    routes = {
        k: r
        for k, r in (body.get("routes") or {}).items()
        if isinstance(r, dict) and r.get("backups")
    }
    facts = {"backends": states, **({"routes": routes} if routes else {})}  # see _routes
    return Observation(True, "up", f"{up}/{len(states)} backends up", facts=facts)


def _postgres(body: dict[str, Any]) -> Observation:
    """An agent's /status: up when it does its job (spofless.pg's `healthy`)."""
    state = str(body.get("state", ""))
    role = body.get("role")
    facts = {
        "role": role,
        "leader": bool(body.get("leader")),
        "lag": body.get("lag"),
        "state": state,
        "degraded": bool(body.get("degraded")),
    }
    if isinstance(body.get("restore_drill"), dict):  # the component has backups
        facts["restore_drill"] = body["restore_drill"]
    running = bool(body.get("running")) and state != "failed"
    if running and role == "primary" and body.get("leader"):
        return Observation(True, "up", "the writable leader", facts=facts)
    if running and role == "replica" and body.get("streaming"):
        return Observation(True, "up", "streaming", facts=facts)
    if state in CATCHING_UP:
        return Observation(False, "catching up", state, facts=facts)
    if running and role == "replica":
        reason = body.get("reason") or "not streaming"
        return Observation(False, "not streaming", str(reason), facts=facts)
    return Observation(False, "down", str(body.get("reason") or state or "stopped"), facts=facts)


async def _dns(target: Target, bound: float) -> Observation:
    import dns.asyncquery
    import dns.exception
    import dns.message
    import dns.rcode
    import dns.rdatatype

    assert target.dns_name is not None
    query = dns.message.make_query(target.dns_name, dns.rdatatype.A)
    try:
        answer = await dns.asyncquery.udp(query, target.ip, timeout=bound, port=target.port)
    except dns.exception.Timeout as exc:
        raise TimeoutError from exc  # a look that timed out, like any other
    if answer.rcode() != dns.rcode.NOERROR:
        return Observation(False, "down", f"{target.dns_name} answered {answer.rcode()!r}")
    addresses = [str(r) for rrset in answer.answer for r in rrset]
    if not addresses:
        return Observation(False, "down", f"no address for {target.dns_name}")
    return Observation(True, "up", f"{target.dns_name} -> {', '.join(addresses)}")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
