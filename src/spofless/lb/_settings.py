"""The load balancer's settings: one frozen object, built from a topology or from flags.

Both ways of starting a balancer (`spofless lb FILE --component C --instance I`
and `spofless lb --listen ... --backend ...`) end in `LbSettings`; everything
after that is one code path.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spofless.topology import (
    CacheComponent,
    CannotRunError,
    HealthCheck,
    LbOptions,
    LbRoute,
    LoadBalancerComponent,
    PostgresComponent,
    RuntimeComponent,
    Topology,
    component_of,
    instance_at,
    where,
)

Port = Annotated[int, Field(ge=0, le=65535)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendSpec(_Frozen):
    name: str  # unique; `web/0` from a topology, `host:port` standalone
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    weight: Annotated[int, Field(ge=0, le=256)] = 1
    # Where its health check connects, when not to `port` (e.g. a PostgreSQL agent's API).
    check_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # Gets requests only while none of its route's primaries (the backends that are not
    # backups) can take them: HAProxy's `backup` server.
    backup: bool = False


class RouteSpec(_Frozen):
    name: str  # the component it points at, `default` standalone
    path_prefix: str = "/"
    host: str | None = None
    backends: tuple[BackendSpec, ...] = Field(min_length=1)
    health: HealthCheck = HealthCheck()
    # With every backend down, still try them. Off: only backends whose check passed get
    # traffic (not even those not checked yet), and none is refused rather than guessed.
    fail_open: bool = True
    # New connections go to one backend only (a primary): the one chosen while it stays
    # up, else the one that came up last.
    exclusive: bool = False
    # mode redis: the shard this route serves (its cache component), and whether it is
    # the shard's read route (its replicas) rather than its primary.
    shard: str | None = None
    reads: bool = False
    # Seconds over which a backend back up (or enabled again) ramps to its full weight;
    # None: the balancer's `slow_start` option.
    slow_start: Annotated[float, Field(ge=0, le=3600)] | None = None

    @model_validator(mode="after")
    def _a_primary_for_the_backups(self) -> RouteSpec:
        if all(b.backup for b in self.backends):
            raise ValueError(
                f"route {self.name!r}: every backend is a backup; a backup stands in for the "
                "primaries when they are all down, so give at least one primary"
            )
        if self.exclusive and any(b.backup for b in self.backends):
            raise ValueError(f"route {self.name!r} sends to one primary only: it takes no backups")
        return self


class LbSettings(_Frozen):
    """Everything one balancer instance needs to run."""

    instance: str  # for logs: `lb/0` or `lb`
    listen_host: str = "127.0.0.1"
    listen_port: Port = 8080
    mode: Literal["http", "tcp", "redis"] = "http"
    routes: tuple[RouteSpec, ...] = Field(min_length=1)
    options: LbOptions = LbOptions()
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    admin_host: str | None = None
    admin_port: Port | None = None
    admin_token: str | None = None

    @model_validator(mode="after")
    def _admin_token_off_loopback(self) -> LbSettings:
        admin_off_loopback = not _is_loopback(self.admin_host or "127.0.0.1")
        if self.admin_port is not None and admin_off_loopback and not self.admin_token:
            raise ValueError(
                f"the admin API listens on {self.admin_host}, not loopback: "
                "set an admin token (--admin-token or admin_token:)"
            )
        if self.mode == "tcp" and len(self.routes) != 1:
            raise ValueError("tcp mode takes exactly one route")
        if self.mode == "http" and self.options.proxy_protocol != "none":
            raise ValueError(
                "proxy_protocol is for tcp mode; http mode passes the client's address in "
                "X-Forwarded-For and Forwarded"
            )
        return self

    @model_validator(mode="after")
    def _shared_backends_agree(self) -> LbSettings:
        # A backend has one health state, however many routes reach it.
        seen: dict[str, tuple[RouteSpec, BackendSpec]] = {}
        for route in self.routes:
            for b in route.backends:
                if b.name not in seen:
                    seen[b.name] = (route, b)
                    continue
                first, fb = seen[b.name]
                mine = (route.health, route.fail_open, route.exclusive, b.check_port, b.backup)
                if (first.health, first.fail_open, first.exclusive, fb.check_port, fb.backup) != (
                    mine
                ):
                    raise ValueError(
                        f"routes {first.name!r} and {route.name!r} both reach {b.name} with "
                        "different health checks or roles; give them the same, or use two "
                        "load balancers"
                    )
                if first.slow_start != route.slow_start:
                    raise ValueError(
                        f"routes {first.name!r} and {route.name!r} both reach {b.name} with "
                        "different slow_start; give them the same"
                    )
        return self

    def backends(self) -> dict[str, BackendSpec]:
        """Every backend of every route, by name (a component routed twice counts once)."""
        return {b.name: b for r in self.routes for b in r.backends}

    def slow_start_of(self, route: RouteSpec) -> float:
        """The slow-start window of `route`'s backends: its own, else the balancer's."""
        return self.options.slow_start if route.slow_start is None else route.slow_start


def default_health(mode: str) -> HealthCheck:
    """The check used when none is given. In http mode an HTTP GET of `/` answered with any
    status below 500: a TCP connect alone cannot see a frozen (SIGSTOPped, hung) process,
    whose kernel still accepts connections."""
    if mode == "http":
        return HealthCheck(type="http", path="/", expect_status=list(range(200, 500)))
    return HealthCheck(type="tcp")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_address(text: str, what: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:80`) into its parts; CannotRunError naming `what`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise CannotRunError(f"{what}: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def _build(**kwargs: object) -> LbSettings:
    try:
        return LbSettings.model_validate(kwargs)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        raise CannotRunError("invalid load balancer settings: " + "; ".join(lines)) from None


def settings_from_flags(
    *,
    listen: str,
    backends: list[str],
    backups: list[str] | None = None,
    mode: str = "http",
    workers: int = 1,
    admin: str | None = None,
    admin_token: str | None = None,
    health: HealthCheck | None = None,
    options: LbOptions | None = None,
) -> LbSettings:
    """Settings of a standalone balancer: one route to the given `host:port[,weight]` list,
    with `backups` (same form) standing in when every backend is down."""
    if not backends:
        raise CannotRunError(
            "give at least one --backend host:port (a --backup alone has no "
            "primary to stand in for)"
        )
    specs = []
    given = [(text, "--backend") for text in backends]
    given += [(text, "--backup") for text in backups or []]
    for text, flag in given:
        addr, _, weight = text.partition(",")
        host, port = split_address(addr, flag)
        if weight and not weight.isdigit():
            raise CannotRunError(f"{flag}: weight {weight!r} is not a number")
        specs.append(
            {
                "name": addr,
                "host": host,
                "port": port,
                "weight": int(weight) if weight else 1,
                "backup": flag == "--backup",
            }
        )
    if len({s["name"] for s in specs}) != len(specs):
        raise CannotRunError("--backend/--backup: the same address is given twice")
    lhost, lport = split_address(listen, "--listen")
    ahost, aport = split_address(admin, "--admin") if admin else (None, None)
    route = {"name": "default", "backends": specs, "health": health or default_health(mode)}
    return _build(
        instance="lb",
        listen_host=lhost,
        listen_port=lport,
        mode=mode,
        routes=[route],
        options=options or LbOptions(),
        workers=workers,
        admin_host=ahost,
        admin_port=aport,
        admin_token=admin_token,
    )


def lb_settings(topology: Topology, component: str, index: int) -> LbSettings:
    """Settings of instance `index` of the load balancer `component` of a topology."""
    comp = component_of(topology, component, LoadBalancerComponent)
    me = instance_at(topology, component, index)
    address = topology.address_of(me)
    if address is None:
        raise CannotRunError(f"{where(topology, component)}: {component} needs a `port`")
    if not comp.routes:
        raise CannotRunError(f"{where(topology, component)}: {component} needs `routes`")
    if comp.mode == "redis":
        routes = _redis_routes(topology, component, comp.routes)
    else:
        routes = [_route(topology, component, i, r, comp.mode) for i, r in enumerate(comp.routes)]
    host, port = split_address(address, component)
    admin_port = comp.admin_port + index if comp.admin_port is not None else None
    return _build(
        instance=me.name,
        # With a floating address the load balancer must also accept on the VIP.
        listen_host="0.0.0.0" if comp.vip is not None else host,
        listen_port=port,
        mode=comp.mode,
        routes=routes,
        options=comp.lb,
        workers=comp.workers,
        admin_host=host if admin_port is not None else None,
        admin_port=admin_port,
        admin_token=comp.admin_token,
    )


def _route(topology: Topology, lb: str, i: int, route: LbRoute, mode: str) -> dict[str, object]:
    target = topology.components.get(route.to)
    at = where(topology, lb, "routes", i, "to")
    if target is None:
        raise CannotRunError(f"{at}: routes[{i}].to: no component {route.to!r}")
    if not isinstance(target, RuntimeComponent) or target.port is None:
        raise CannotRunError(f"{at}: routes[{i}].to: {route.to} has no `port` to send to")
    instances = topology.instances[route.to]
    if route.weights is not None and len(route.weights) != len(instances):
        raise CannotRunError(
            f"{at}: routes[{i}].weights: {len(route.weights)} weights"
            f" for {len(instances)} instances of {route.to}"
        )
    check = _route_check(topology, lb, i, route, target, mode)
    if check.port is not None and check.port + len(instances) - 1 > 65535:
        raise CannotRunError(
            f"{where(topology, lb, 'routes', i)}: routes[{i}]: check port {check.port}"
            f" + {len(instances)} instances exceeds 65535"
        )
    backends = []
    for k, inst in enumerate(instances):
        address = topology.address_of(inst)
        assert address is not None  # the target has a port
        host, port = split_address(address, inst.name)
        weight = route.weights[k] if route.weights is not None else 1
        check_port = check.port + k if check.port is not None else None
        backends.append(
            {
                "name": inst.name,
                "host": host,
                "port": port,
                "weight": weight,
                "check_port": check_port,
                "backup": k in route.backup,
            }
        )
    return {
        "name": route.to,
        "path_prefix": route.path_prefix,
        "host": route.host,
        "backends": backends,
        "health": check.health,
        "fail_open": check.fail_open,
        "exclusive": check.exclusive,
        "slow_start": route.slow_start,
    }


class _Check(_Frozen):
    """How a route checks its backends, resolved from `health:`, `role:` and the target."""

    health: HealthCheck
    port: int | None = None  # base check port: instance k at port + k
    fail_open: bool = True
    exclusive: bool = False


# The agent API path that answers 200 on the instances a role routes to.
ROLE_PATHS = {"primary": "/primary", "replica": "/replica"}


def _route_check(
    topology: Topology, lb: str, i: int, route: LbRoute, target: RuntimeComponent, mode: str
) -> _Check:
    fail_open = route.fail_open
    if route.role is None:
        if route.health is None:
            health = target.health or default_health(mode)
            return _Check(health=health, fail_open=True if fail_open is None else fail_open)
        fields = route.health.model_dump(exclude={"port"}, exclude_unset=True)
        return _Check(
            health=HealthCheck.model_validate(fields),
            port=route.health.port,
            fail_open=True if fail_open is None else fail_open,
        )
    at = where(topology, lb, "routes", i, "role")
    if not isinstance(target, PostgresComponent):
        raise CannotRunError(
            f"{at}: routes[{i}].role: {route.to} is kind {target.kind}; "
            "a role routes to a postgres component"
        )
    if target.api_port is None:
        raise CannotRunError(
            f"{at}: routes[{i}].role: {route.to} needs `api_port` (its agents' API, "
            "which tells the primary from the replicas)"
        )
    if mode != "tcp":
        raise CannotRunError(f"{at}: routes[{i}].role: PostgreSQL is routed in mode: tcp")
    path = ROLE_PATHS[route.role]
    if route.max_lag is not None:
        path += f"?lag={route.max_lag}"
    timing = route.health.model_dump(exclude_unset=True) if route.health is not None else {}
    if route.role == "primary":
        # /primary answers 200 only on the lease holder, already the outcome of an election:
        # a second passing check protects against nothing and lengthens every failover.
        timing.setdefault("rise", 1)
    health = HealthCheck(type="http", path=path, expect_status=[200], **timing)
    primary = route.role == "primary"
    return _Check(
        health=health,
        port=target.api_port,
        fail_open=(not primary) if fail_open is None else fail_open,
        exclusive=primary,
    )


def _redis_routes(topology: Topology, lb: str, routes: list[LbRoute]) -> list[dict[str, object]]:
    """Mode redis: per shard (a cache component), a route to its primary (the agent
    answering `/primary`) and, with `read_from: replica`, one to its replicas."""
    out: list[dict[str, object]] = []
    for i, route in enumerate(routes):
        at = where(topology, lb, "routes", i, "to")
        target = topology.components.get(route.to)
        if not isinstance(target, CacheComponent):
            kind = "missing" if target is None else f"kind {target.kind}"
            raise CannotRunError(
                f"{at}: routes[{i}].to: {route.to} is {kind}; mode redis routes to cache "
                "components (one route per shard)"
            )
        if target.port is None or target.api_port is None:
            raise CannotRunError(
                f"{at}: routes[{i}].to: {route.to} needs `port` and `api_port` (its agents' "
                "API tells the primary from the replicas)"
            )
        if route.role is not None or route.health is not None or route.weights is not None:
            raise CannotRunError(
                f"{where(topology, lb, 'routes', i)}: routes[{i}]: in mode redis a route "
                "takes `to` and `read_from` only (the shard's agents say who is primary)"
            )
        roles = [("primary", False)] + ([("replica", True)] if route.read_from == "replica" else [])
        for role, reads in roles:
            backends = []
            for k, inst in enumerate(topology.instances[route.to]):
                address = topology.address_of(inst)
                assert address is not None
                host, port = split_address(address, inst.name)
                name = inst.name if not reads else f"{inst.name} (replica)"
                backends.append(
                    {"name": name, "host": host, "port": port, "check_port": target.api_port + k}
                )
            health = HealthCheck(
                type="http", path=ROLE_PATHS[role], expect_status=[200], rise=1 if not reads else 2
            )
            out.append(
                {
                    "name": route.to if not reads else f"{route.to} (replicas)",
                    "backends": backends,
                    "health": health,
                    "fail_open": False,
                    "exclusive": not reads,
                    "shard": route.to,
                    "reads": reads,
                }
            )
    return out
