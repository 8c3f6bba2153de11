"""The fields of each kind spofless runs: service, etcd, postgres, cache, load_balancer, dns.

Each runtime part owns its kind's fields here; the analysis reads only the
common fields of `Component`. `component_model(kind)` picks the model that
validates a component, `AnalysisOnlyComponent` for every kind not listed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    StringConstraints,
    field_validator,
    model_validator,
)

from spofless.topology._backup import BackupSpec
from spofless.topology._monitor import MonitorComponent
from spofless.topology._schema import (
    AnalysisOnlyComponent,
    Component,
    HealthCheck,
    Name,
    RouteHealthCheck,
    RuntimeComponent,
    Strict,
    parse_duration,
)

# A slow-start window: seconds, or a duration such as `10s`; at most an hour.
SlowStart = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=3600)]


# Kinds spofless runs. Each runtime part gives its kind its own fields here
# (for example `run:` for services, `vip:` for load balancers); the analysis
# sees the common fields only.
class ServiceComponent(RuntimeComponent):
    kind: Literal["service"] = "service"
    # The user's program, run without a shell; {port} {host} {index} {state_dir} expand
    # per instance (spofless.stack). Without `run` the service is described, not run.
    run: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("run")
    @classmethod
    def _run_is_a_command(cls, v: str | None) -> str | None:
        if v is not None:
            check_run_command(v)
        return v


class EtcdComponent(RuntimeComponent):
    kind: Literal["etcd"] = "etcd"
    # Member i listens for clients on `port + i` and for peers on `peer_port + i`.
    peer_port: Annotated[int, Field(ge=1, le=65535)] | None = None

    @model_validator(mode="after")
    def _peer_ports_fit(self) -> EtcdComponent:
        if self.peer_port is not None and self.peer_port + self.instance_count - 1 > 65535:
            raise ValueError(
                f"peer_port {self.peer_port} + {self.instance_count} instances exceeds 65535"
            )
        return self


RUN_PLACEHOLDERS = ("port", "host", "index", "state_dir")


def check_run_command(run: str) -> list[str]:
    """Split a `run` command like a shell would (no shell runs it) and check its placeholders."""
    import shlex
    import string

    try:
        argv = shlex.split(run)
    except ValueError as exc:
        raise ValueError(f"cannot split the command: {exc}") from None
    if not argv:
        raise ValueError("the command is empty")
    for word in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(word) if f is not None]
        except ValueError as exc:
            raise ValueError(
                f"bad placeholder in '{word}': {exc} (write {{{{ for a brace)"
            ) from None
        for name in fields:
            if name not in RUN_PLACEHOLDERS:
                known = ", ".join("{" + p + "}" for p in RUN_PLACEHOLDERS)
                raise ValueError(f"unknown placeholder {{{name}}} in '{word}'; known: {known}")
    return argv


class AutoPromoteSpec(Strict):
    """`auto_promote:` on a postgres component of a group of clusters (`standby_of`): when
    it is a standby cluster, it promotes itself once a majority of the `quorum` etcd (members
    in three regions or more) agrees the primary cluster's region lease expired; while it is
    the primary cluster, its leader holds that lease and stops writes without it
    (spofless.pg.region_lease). Times are seconds."""

    quorum: Name  # an etcd component with members in at least three regions, none a majority
    # The region lease's ttl. Longer than a local failover of either cluster (which holds
    # no region lease while it has no primary): at least twice the clusters' own ttl.
    ttl: Annotated[int, Field(ge=2, le=3600)] = 10


class PostgresComponent(RuntimeComponent):
    """PostgreSQL with automatic failover (spofless.pg); `port` is instance 0's SQL port."""

    kind: Literal["postgres"] = "postgres"
    # Commits wait for one synchronous replica; only it may be promoted (no lost commit
    # unless it degrades). `synchronous: strict` never degrades (writes wait instead).
    synchronous: bool = False
    # Set by `synchronous: strict` (the older spelling `strict: true` is kept).
    strict: bool = False
    # A replica further behind than this (bytes) is never promoted. Patroni's default.
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = 1024 * 1024
    # The leader lease's ttl: a dead primary is replaced about this long after it died.
    # 3 s keeps a node-loss failover under 5 s and rides out one etcd leader election.
    ttl: Annotated[int, Field(ge=2, le=3600)] = 3
    # The agent's loop period, also the lease renewal interval.
    loop_wait: Annotated[float, Field(gt=0, le=60)] = 0.5
    # Instance i's HTTP API (/primary, /replica, /health, /cluster) listens on api_port + i.
    api_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # The OS user PostgreSQL runs as; None: the agent's user, or `postgres` under root.
    os_user: str | None = None
    # May re-clone (keeping the old directory aside) when pg_rewind failed, in
    # asynchronous mode; synchronous mode does when it loses no acknowledged commit.
    allow_reclone: bool = False
    # Networks (CIDR) or addresses that may connect besides the hosts of the components
    # that need this one (pg_hba.conf, scram-sha-256).
    allow: list[str] = Field(default_factory=list)
    # Base backups and the WAL archive (spofless.backup); None: no backups.
    backup: BackupSpec | None = None
    # A standby cluster (Patroni's standby_cluster): the postgres component whose data
    # this one copies, usually in another region. Its leader, elected in its own etcd,
    # replicates from that cluster's read-write member; its members from its leader.
    # It never accepts writes until `spofless pg promote-region` makes it the primary.
    standby_of: Name | None = None
    # Automatic promotion of this cluster when it is the standby and the primary region is
    # gone, decided by a third-region quorum (AutoPromoteSpec). None: promote-region only.
    auto_promote: AutoPromoteSpec | None = None

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an address or network (10.0.0.0/8)") from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _strict_spelling(cls, data: Any) -> Any:
        """`synchronous: strict` is synchronous mode that never degrades."""
        if isinstance(data, dict) and data.get("synchronous") == "strict":
            return {**data, "synchronous": True, "strict": True}
        return data

    @model_validator(mode="after")
    def _timing_fits(self) -> PostgresComponent:
        if self.loop_wait * 2 > self.ttl:
            raise ValueError(
                f"loop_wait ({self.loop_wait:g}s) must be at most half the ttl ({self.ttl}s) "
                "so a primary renews its lease at least twice per ttl: lower loop_wait"
            )
        if self.strict and not self.synchronous:
            raise ValueError("strict needs synchronous: true (or write synchronous: strict)")
        if self.api_port is not None and self.api_port + self.instance_count - 1 > 65535:
            raise ValueError(f"api_port {self.api_port} + {self.instance_count} exceeds 65535")
        return self


class CacheComponent(RuntimeComponent):
    """One shard of a Redis cache tier (spofless.cache): a primary and its replicas.

    Each instance is a `redis-server` run by its agent, which keeps the shard's leader
    lease in etcd: the lease holder is the primary, the others replicate from it. A tier
    of several shards is several cache components behind one load balancer in
    `mode: redis` (one route per shard), so that the analysis counts each shard as needed
    by the load balancer and up while one of its instances is. Without `port` and
    `api_port` the component is described, not run (analysis only).
    """

    kind: Literal["cache"] = "cache"
    # Instance i's agent API (/primary, /replica, /health, /status) listens on api_port + i.
    api_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # The leader lease's ttl: a dead primary is replaced about this long after it died.
    ttl: Annotated[int, Field(ge=2, le=3600)] = 3
    # The agent's loop period, also the lease renewal interval.
    loop_wait: Annotated[float, Field(gt=0, le=60)] = 0.5
    # Redis's min-replicas-to-write on the primary: a write is refused unless this many
    # replicas are connected (within 10 s of lag). 0: writes never wait on replicas; a
    # client that must not lose a write sends WAIT after it (see docs/cache.md).
    min_replicas_to_write: Annotated[int, Field(ge=0, le=16)] = 0
    # Redis's maxmemory (e.g. 256mb) with allkeys-lru eviction; None: no limit.
    maxmemory: Annotated[str, StringConstraints(pattern=r"^\d+[kKmMgG]?[bB]?$")] | None = None

    @model_validator(mode="after")
    def _timing_fits(self) -> CacheComponent:
        if self.loop_wait * 2 > self.ttl:
            raise ValueError(
                f"loop_wait ({self.loop_wait:g}s) must be at most half the ttl ({self.ttl}s) "
                "so a primary renews its lease at least twice per ttl: lower loop_wait"
            )
        if self.api_port is not None and self.api_port + self.instance_count - 1 > 65535:
            raise ValueError(f"api_port {self.api_port} + {self.instance_count} exceeds 65535")
        if self.min_replicas_to_write > self.instance_count - 1:
            raise ValueError(
                f"min_replicas_to_write ({self.min_replicas_to_write}) needs that many "
                f"replicas, and {self.instance_count} instances have "
                f"{self.instance_count - 1}: lower it or add instances"
            )
        return self


class LbRoute(Strict):
    """Where a load balancer sends requests: the instances of component `to`.

    In http mode the first route whose `host` and `path_prefix` match a request
    wins; in tcp mode there is exactly one route.
    """

    to: Name
    path_prefix: str = "/"
    host: str | None = None  # the Host header without port; None matches any
    weights: list[Annotated[int, Field(ge=0, le=256)]] | None = None  # per instance, 0 = none
    # This route's check of `to`'s instances; None: `to`'s own `health:` (or the default).
    health: RouteHealthCheck | None = None
    # To a postgres component: `primary` sends to the writable leader only, `replica` to
    # streaming replicas, each found through its agent API (`/primary`, `/replica`) at
    # `api_port + i`. `health:` may then give only the check's timing.
    role: Literal["primary", "replica"] | None = None
    # role replica: leave out a replica lagging more than this (`/replica?lag=`), e.g. 16MB.
    max_lag: Annotated[str, StringConstraints(pattern=r"^\d+[kKmMgG]?[bB]?$")] | int | None = None
    # With every backend down, still try them (availability) or refuse new connections.
    # None: off for role primary (a replica or a fenced old primary cannot take a write,
    # and a write route must reach one server only), on otherwise.
    fail_open: bool | None = None
    # mode redis: read commands go to the shard's replicas (`/replica` of its agents),
    # to its primary when none is up; primary (the default) sends everything there.
    read_from: Literal["primary", "replica"] = "primary"
    # The instances of `to` (their indices) that are backups, as HAProxy's `backup`
    # servers: they get requests only while no other instance of the route can take
    # them (down, ejected, drained or disabled), and lose them again once one is back
    # up for `rise` checks. At least one instance must stay a primary.
    backup: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    # A backend back up, or enabled again through the admin API, ramps its weight from
    # 10 % to full over this window (HAProxy's `slowstart`); None: the `lb:` mapping's.
    slow_start: SlowStart | None = None

    @model_validator(mode="after")
    def _role_fields(self) -> LbRoute:
        if self.max_lag is not None and self.role != "replica":
            raise ValueError("`max_lag` belongs to routes with role: replica")
        if self.backup and self.role == "primary":
            raise ValueError(
                "`backup` does not go with role: primary, which already sends to the one "
                "writable leader; a replica cannot stand in for it"
            )
        if len(set(self.backup)) != len(self.backup):
            raise ValueError("`backup` names an instance twice")
        if self.role is not None and self.health is not None:
            given = self.health.model_fields_set - ROLE_HEALTH_TIMING
            if given:
                raise ValueError(
                    f"role: {self.role} sets the check's {', '.join(sorted(given))}; "
                    f"with a role, `health:` takes only {', '.join(sorted(ROLE_HEALTH_TIMING))}"
                )
        return self


# The fields of a route's `health:` that a `role:` leaves to the user.
ROLE_HEALTH_TIMING = frozenset({"interval", "timeout", "fall", "rise"})


class LbOptions(Strict):
    """Balancing, retries, timeouts and limits of a load balancer; every default is fast
    failover for small services on one network. Times are seconds."""

    algorithm: Literal[
        "round_robin", "weighted_round_robin", "least_connections", "two_choices", "hash"
    ] = "round_robin"
    # hash: what is hashed: source | path | header:<name> | cookie:<name>
    hash_key: Annotated[str, StringConstraints(pattern=r"^(source|path|(header|cookie):.+)$")] = (
        "source"
    )
    hash_balance: Annotated[float, Field(ge=1.0, le=10.0)] = 1.25  # bounded loads factor c
    connect_timeout: Annotated[float, Field(gt=0, le=3600)] = 1.0
    response_timeout: Annotated[float, Field(gt=0, le=86400)] = 30.0  # first response byte
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0  # whole request head (slowloris)
    client_idle_timeout: Annotated[float, Field(gt=0, le=86400)] = 60.0  # keep-alive, tcp idle
    # Below the keep-alive timeout of common servers (uvicorn 5 s) so that a pooled
    # connection is rarely closed by the backend just as a request is sent on it.
    backend_idle_timeout: Annotated[float, Field(gt=0, le=3600)] = 2.0
    max_header_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = 32768  # 431 above
    max_body_bytes: Annotated[int, Field(ge=0)] | None = None  # 413 above; None: no limit
    max_conns_per_backend: Annotated[int, Field(ge=1)] | None = None  # per worker
    max_queue: Annotated[int, Field(ge=0)] = 1024  # requests waiting for a connection slot
    queue_timeout: Annotated[float, Field(gt=0, le=3600)] = 1.0  # then 503
    retries: Annotated[int, Field(ge=0, le=10)] = 2  # extra attempts on other backends
    retry_budget: Annotated[float, Field(ge=0, le=1)] = 0.2  # retries / requests, per 10 s
    outlier_failures: Annotated[int, Field(ge=1, le=1000)] = 5  # consecutive, then ejected
    outlier_base_ejection: Annotated[float, Field(gt=0, le=3600)] = 1.0  # doubles each time
    outlier_max_ejection: Annotated[float, Field(gt=0, le=86400)] = 30.0
    # A backend back up, or enabled again, ramps its weight up over this (10 % to full).
    slow_start: SlowStart = 5.0
    drain_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0  # SIGTERM/SIGHUP grace
    forwarded_headers: bool = True  # X-Forwarded-For/-Proto, Forwarded, Via
    # tcp: close the connections to a backend marked down or ejected, so that their
    # clients reconnect to a healthy one at once instead of hanging on a frozen one
    # (HAProxy's on-marked-down shutdown-sessions, which Patroni setups use).
    tcp_close_on_down: bool = True
    # tcp: a connection whose one read brings 64 KiB or more (bulk data) is relayed with
    # splice(2), zero-copy inside the kernel (HAProxy's option splice-auto), on Linux.
    tcp_splice: bool = True
    # tcp: start each backend connection with a PROXY protocol header naming the client
    # (HAProxy's send-proxy / send-proxy-v2); the backends must expect it.
    proxy_protocol: Literal["none", "v1", "v2"] = "none"


class VipSpec(Strict):
    """`vip:` on a load balancer: one floating IPv4 address, held by exactly one of its
    instances at a time, elected through etcd (spofless.vip has the hand-over rule);
    or, with `addresses`, one address per region, each held by one of that region's
    instances, elected among them. Times are seconds."""

    address: str | None = None  # IPv4, with a prefix length or /32; e.g. 10.77.255.1/16
    # Instead of `address`: region -> its own address, floating between the instances
    # in that region only (a DNS record naming the load balancer answers with them).
    addresses: dict[Name, str] | None = None
    # The interface that gets the address; auto: the one whose network contains it.
    interface: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@\-]{1,15}$")] = "auto"
    dcs: Name | None = None  # the etcd component that decides; None: the topology's only one
    # The holder renews its claim in etcd this often; the claim is the heartbeat.
    heartbeat_interval: Annotated[float, Field(gt=0, le=10)] = 0.05
    # A claim not renewed for hold_time is void: its holder has dropped the address by
    # then, and a standby may depose it. Five heartbeats: four may be lost in a row.
    hold_time: Annotated[float, Field(gt=0, le=60)] = 0.25
    # A new holder waits this much longer than the old one's hold_time before it adds the
    # address: timer lateness and clock-rate drift between two hosts.
    takeover_margin: Annotated[float, Field(ge=0, le=10)] = 0.05
    # The etcd lease under the claim (whole seconds, etcd's minimum is about 1.5 x its
    # election timeout): it frees the key of a holder that vanished with no standby.
    lease_ttl: Annotated[int, Field(ge=2, le=3600)] = 2
    # Gratuitous ARP: a burst when the address is added, then one every refresh (so a
    # neighbour that missed the burst, e.g. behind a healed partition, learns it anyway).
    garp_count: Annotated[int, Field(ge=1, le=20)] = 3
    garp_interval: Annotated[float, Field(gt=0, le=10)] = 0.1
    garp_refresh: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # How the agent checks its own load balancer; a refused connection counts at once.
    check: HealthCheck = HealthCheck(type="tcp", interval=0.1, timeout=0.25, fall=2, rise=2)

    @field_validator("address")
    @classmethod
    def _ipv4_interface(cls, v: str | None) -> str | None:
        return None if v is None else _floating_ipv4(v)

    @field_validator("addresses")
    @classmethod
    def _ipv4_interfaces(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("give at least one region's address, e.g. {eu: 10.77.255.1/16}")
        for region, address in v.items():
            try:
                _floating_ipv4(address)
            except ValueError as exc:
                raise ValueError(f"{region}: {exc}") from None
        seen = [str(ipaddress.IPv4Interface(a).ip) for a in v.values()]
        if len(set(seen)) != len(seen):
            raise ValueError(f"two regions have the same address: {', '.join(seen)}")
        return v

    @model_validator(mode="after")
    def _one_form(self) -> VipSpec:
        if (self.address is None) == (self.addresses is None):
            raise ValueError(
                "give either `address` (one address for every instance) or `addresses` "
                "(one per region), not both nor neither"
            )
        return self

    @property
    def per_region(self) -> bool:
        return self.addresses is not None

    def address_in(self, region: str | None) -> str | None:
        """The address the instances in `region` float (with its prefix length): the one
        address, or that region's; None when the region has none."""
        if self.addresses is None:
            return self.address
        return self.addresses.get(region) if region is not None else None

    @model_validator(mode="after")
    def _timing(self) -> VipSpec:
        if self.hold_time < 3 * self.heartbeat_interval:
            raise ValueError(
                f"hold_time ({self.hold_time:g}s) must be at least 3 x heartbeat_interval "
                f"({self.heartbeat_interval:g}s) so that one lost renewal does not cost the "
                "address: raise hold_time or lower heartbeat_interval"
            )
        if self.hold_time + self.takeover_margin >= self.lease_ttl:
            raise ValueError(
                f"hold_time + takeover_margin ({self.hold_time + self.takeover_margin:g}s) "
                f"must be under lease_ttl ({self.lease_ttl}s): lower hold_time"
            )
        return self


def _floating_ipv4(v: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(v)
    except ValueError as exc:
        raise ValueError(f"address must be IPv4 such as 10.77.255.1/16: {exc}") from None
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
        raise ValueError(f"address {iface.ip} cannot float between hosts")
    return v


class LoadBalancerComponent(RuntimeComponent):
    kind: Literal["load_balancer"] = "load_balancer"
    vip: VipSpec | None = None  # a floating address held by one instance (spofless.vip)
    # redis: speaks RESP; each route is one shard (a cache component), keys are spread
    # over the shards by consistent hashing and sent to each shard's current primary.
    mode: Literal["http", "tcp", "redis"] = "http"
    routes: list[LbRoute] = Field(default_factory=list)
    lb: LbOptions = LbOptions()
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    admin_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # instance i: + i
    admin_token: str | None = None  # required when the admin API is not on loopback

    @model_validator(mode="after")
    def _tcp_has_one_route(self) -> LoadBalancerComponent:
        if self.mode == "tcp" and len(self.routes) > 1:
            raise ValueError("a load balancer in tcp mode takes exactly one route")
        if self.mode != "redis" and any(r.read_from != "primary" for r in self.routes):
            raise ValueError("`read_from` belongs to the routes of a load balancer in mode redis")
        if self.mode == "redis" and any(r.backup or r.slow_start is not None for r in self.routes):
            raise ValueError(
                "`backup` and `slow_start` belong to routes in mode http or tcp; in mode redis "
                "each shard's agents say which instance is its primary"
            )
        # Per region, a region may have one instance (its clients fall back to another
        # region's address through DNS); the topology checks place them.
        if self.vip is not None and not self.vip.per_region and self.instance_count < 2:
            raise ValueError(
                "a vip needs at least 2 load balancer instances to float between "
                f"(this one has {self.instance_count})"
            )
        return self


# A DNS label: letters, digits, '-' and '_', at most 63, not starting or ending with '-'.
_DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?$")


def _dns_name(v: str, *, apex_ok: bool) -> str:
    if apex_ok and v == "@":
        return v
    labels = v[:-1].split(".") if v.endswith(".") else v.split(".")
    if len(v) > 253 or not all(_DNS_LABEL_RE.match(label) for label in labels):
        raise ValueError(
            f"{v!r} is not a DNS name: dot-separated labels of letters, digits, '-' and '_', "
            "each at most 63 long"
        )
    return v


# A zone or server name such as `shop.example.` (the final dot is optional).
DnsZoneName = Annotated[str, AfterValidator(lambda v: _dns_name(v, apex_ok=False))]
# A name relative to the zone (`www`, `api.eu`), or `@` for the zone apex.
DnsOwnerName = Annotated[str, AfterValidator(lambda v: _dns_name(v, apex_ok=True))]


class DnsRecordSpec(Strict):
    """The instances of `component` a DNS name answers with (A for IPv4, AAAA for IPv6)."""

    component: Name
    # Public address of each instance, in instance order; default: its host's address.
    addresses: list[IPvAnyAddress] | None = None


class DnsRateLimit(Strict):
    """Response rate limiting over UDP per client netblock (token bucket, with slip)."""

    # Enough for a busy resolver's share of a short-TTL zone; 0 turns limiting off.
    responses_per_second: Annotated[float, Field(ge=0, le=1_000_000)] = 100.0
    # Bucket size: a burst this large passes at once after a quiet spell.
    burst: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    # Every slip-th limited query gets a tiny truncated answer (TC=1: retry over TCP), the
    # rest are dropped; 0 drops all. 2 is BIND's default: a real client behind a spoofed
    # flood still gets through over TCP, a victim gets no more bytes than the flood sent.
    slip: Annotated[int, Field(ge=0, le=10)] = 2
    ipv4_prefix: Annotated[int, Field(ge=8, le=32)] = 24
    ipv6_prefix: Annotated[int, Field(ge=16, le=128)] = 56


class DnsComponent(RuntimeComponent):
    """Health-checked authoritative DNS (spofless.dns); `zone` and `records` are needed to run."""

    kind: Literal["dns"] = "dns"
    zone: DnsZoneName | None = None
    # Name -> component (or {component, addresses}); answers list its healthy instances.
    records: dict[DnsOwnerName, Name | DnsRecordSpec] = Field(default_factory=dict)
    # Short so that clients follow health changes quickly (Route 53 health-checked records
    # and Consul DNS use 0-60 s).
    ttl: Annotated[int, Field(ge=0, le=86400)] = 5
    # Region -> client networks: a client in a region's networks (by source address or
    # EDNS client subnet) is answered with that region's healthy instances first.
    regions: dict[Name, list[IPvAnyNetwork]] = Field(default_factory=dict)
    # Names of the zone's name servers, one per DNS instance; default ns1, ns2, ... in the zone.
    nameservers: list[DnsZoneName] | None = None
    rate_limit: DnsRateLimit = DnsRateLimit()
    # Largest UDP answer sent whatever the client advertises: the DNS flag day 2020 value,
    # which avoids IP fragmentation on common paths.
    max_udp_payload: Annotated[int, Field(ge=512, le=4096)] = 1232


RUNTIME_KINDS: dict[str, type[Component]] = {
    "service": ServiceComponent,
    "etcd": EtcdComponent,
    "postgres": PostgresComponent,
    "cache": CacheComponent,
    "load_balancer": LoadBalancerComponent,
    "dns": DnsComponent,
    "monitor": MonitorComponent,
}


def component_model(kind: object) -> type[Component]:
    """The model that validates a component of this kind."""
    if isinstance(kind, str) and kind in RUNTIME_KINDS:
        return RUNTIME_KINDS[kind]
    return AnalysisOnlyComponent


# -- the lab (spofless.lab): hosts as network namespaces on one machine --------
