"""Traffic during a drill: what the system's clients do, each request recorded.

Two kinds of stream, each in its own thread, paced at `rate` requests a second
(one request at a time: a slow answer delays the next, as for a real client):

- `ProbeStream` with `http_probe`: GET or POST through a load balancer (its instances'
  addresses, tried in order, as a client given several addresses does), a name asked of
  the topology's DNS (each answered address tried in turn), a VIP, or a fixed address.
  A request succeeds on any status below 500 from one of the addresses within its
  timeout. With
  `tcp_probe`: a connection to any instance of a component.
- `SqlStream`: inserts of unique ids through the read-write route (a multi-host libpq
  string with target_session_attrs=read-write over a postgres component's members, or
  a tcp load balancer routing to the primary), by `SqlWriter`: acknowledged, failed,
  or uncertain (a cancelled synchronous commit counts as uncertain, never as a success).
- `ProbeStream` with `sql_read_probe`: `SELECT 1` through the read-only route (libpq
  multi-host with target_session_attrs=prefer-standby, or a load balancer to replicas).

Every stream stops by itself after `bound` seconds, whatever its caller does.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psycopg

from spofless.drill.errors import DrillError
from spofless.drill.measure import Outcome
from spofless.drill.sqlwrite import SqlWriter, WriterReport, bounded
from spofless.topology import Topology
from spofless.topology._drills import HttpTarget, SqlReadTarget, SqlTarget, TrafficSpec

STREAM_BOUND = 3600.0  # no stream outlives this, whatever happens to the drill


class Stream(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def outcomes(self) -> list[Outcome]: ...


Probe = Callable[[], tuple[bool, str]]  # one request: whether it succeeded, and a note


@dataclass
class ProbeStream:
    """Requests made by `probe`, one at a time, `rate` a second (see module docstring)."""

    name: str
    probe: Probe
    t0: float
    rate: float
    bound: float = STREAM_BOUND
    _outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def _run(self) -> None:
        deadline = time.monotonic() + self.bound
        period = 1.0 / self.rate
        while not self._stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            try:
                ok, detail = self.probe()
            except Exception as exc:  # a client failure of any kind is an outcome
                ok, detail = False, f"{type(exc).__name__}: {exc}"[:200]
            ended = time.monotonic()
            with self._lock:
                self._outcomes.append(Outcome(began - self.t0, ended - self.t0, ok, detail))
            self._stop.wait(max(0.0, period - (ended - began)))


def http_probe(
    addresses: Callable[[], Sequence[str]],
    path: str = "/",
    method: str = "GET",
    body: str = "",
    timeout: float = 1.0,
) -> Probe:
    """One HTTP request to the first of `addresses()` that answers below 500."""

    def probe() -> tuple[bool, str]:
        try:
            candidates = list(addresses())
        except Exception as exc:  # a DNS server that does not answer is a client failure
            return False, f"resolve: {exc}"[:200]
        if not candidates:
            return False, "no address to try"
        errors = []
        for address in candidates:
            host, _, port = address.rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                conn.request(method, path, body=body.encode() if method == "POST" else None)
                response = conn.getresponse()
                response.read()
                if response.status < 500:
                    return True, f"{address} {response.status}"
                errors.append(f"{address}: HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{address}: {type(exc).__name__}")
            finally:
                conn.close()
        return False, "; ".join(errors)[:200]

    return probe


def tcp_probe(addresses: Sequence[str], timeout: float = 1.0) -> Probe:
    """One connection to the first of `addresses` that accepts."""

    def probe() -> tuple[bool, str]:
        errors = []
        for address in addresses:
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=timeout):
                    return True, address
            except OSError as exc:
                errors.append(f"{address}: {type(exc).__name__}")
        return False, "; ".join(errors)[:200]

    return probe


@dataclass
class SqlStream:
    """Inserts of unique ids by one SqlWriter; its outcomes as the drill records them."""

    name: str
    conninfo: str
    table: str
    t0: float
    rate: float
    first_id: int = 1
    bound: float = STREAM_BOUND
    writer: SqlWriter | None = None

    def start(self) -> None:
        period = 1.0 / self.rate
        self.writer = SqlWriter(
            self.conninfo,
            self.table,
            self.first_id,
            interval=(period * 0.75, period * 1.25),
            run_bound=self.bound,
        )
        self.writer.__enter__()

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.stop()

    @property
    def report(self) -> WriterReport:
        assert self.writer is not None
        return self.writer.report

    def outcomes(self) -> list[Outcome]:
        if self.writer is None:
            return []
        return [
            Outcome(a.start - self.t0, a.end - self.t0, a.outcome == "acknowledged", a.detail)
            for a in self.writer.attempts()
        ]

    def acked_at(self) -> dict[int, float]:
        """Each acknowledged id with when it was acknowledged (seconds since t0)."""
        return {a.id: a.at - self.t0 for a in self.report.acks}


# -- where a stream's requests go ---------------------------------------------------------


def http_addresses(topology: Topology, target: HttpTarget) -> Callable[[], Sequence[str]]:
    """The addresses a request of `target` tries, in order, asked again for each request."""
    if target.via == "address":
        fixed = [str(target.address)]
        return lambda: fixed
    if target.via == "lb":
        lb = _instances_addresses(topology, str(target.to))
        return lambda: lb
    if target.via == "vip":
        comp = topology.components[str(target.to)]
        vip = getattr(comp, "vip", None)
        port = getattr(comp, "port", None)
        if vip is None or port is None:
            raise DrillError(f"{target.to} has no vip or no port")
        # Per-region addresses: every region's, tried in the order written.
        cidrs = [vip.address] if vip.addresses is None else list(vip.addresses.values())
        address = [f"{str(c).split('/')[0]}:{port}" for c in cidrs]
        return lambda: address
    return _dns_resolver(topology, target)


def _instances_addresses(topology: Topology, component: str) -> list[str]:
    out = [topology.address_of(i) for i in topology.instances[component]]
    found = [a for a in out if a]
    if not found:
        raise DrillError(f"{component} has no port: no address to send traffic to")
    return found


def _dns_resolver(topology: Topology, target: HttpTarget) -> Callable[[], Sequence[str]]:
    import dns.message
    import dns.query
    import dns.rdatatype

    dns_names = [n for n, c in topology.components.items() if c.kind == "dns"]
    comp_name = str(target.to or dns_names[0])
    comp = topology.components[comp_name]
    zone = str(getattr(comp, "zone", "")).rstrip(".")
    records = getattr(comp, "records", {}) or {}
    record = records.get(target.name)
    answered_by = str(getattr(record, "component", record)) if record is not None else ""
    servers = [a for a in (topology.address_of(i) for i in topology.instances[comp_name]) if a]
    backends: dict[str, list[str]] = {}
    if answered_by in topology.components:
        for inst in topology.instances[answered_by]:
            address = topology.address_of(inst)
            if address:
                backends.setdefault(address.rpartition(":")[0], []).append(address)
    qname = f"{target.name}.{zone}." if zone else f"{target.name}."

    def resolve() -> list[str]:
        query = dns.message.make_query(qname, "A")
        errors = []
        for server in servers:
            host, _, port = server.rpartition(":")
            try:
                answer = dns.query.udp(query, host, timeout=0.5, port=int(port)).answer
            except Exception as exc:
                errors.append(f"{server}: {type(exc).__name__}")
                continue
            ips = [r.address for rs in answer if rs.rdtype == dns.rdatatype.A for r in rs]
            return [a for ip in ips for a in backends.get(ip, [])]
        raise DrillError("no DNS server answered (" + ", ".join(errors) + ")")

    return resolve


def sql_read_probe(conninfo: str, timeout: float) -> Probe:
    """`SELECT 1` on a fresh connection; the server that answered."""

    def probe() -> tuple[bool, str]:
        try:
            conn = bounded(lambda: psycopg.connect(conninfo, autocommit=True))
        except psycopg.Error as exc:
            return False, (str(exc).strip().splitlines() or [""])[0][:200]
        try:
            bounded(lambda: conn.execute("SELECT 1").fetchone(), conn, timeout)
            return True, f"port {conn.info.port}"
        except psycopg.Error as exc:
            return False, (str(exc).strip().splitlines() or [""])[0][:200]
        finally:
            conn.close()

    return probe


def sql_conninfo(
    topology: Topology, target: SqlTarget | SqlReadTarget, attrs: str = "read-write"
) -> str:
    """The connection string of `target` with the topology's credentials; libpq picks the
    server by `attrs` (target_session_attrs) among a postgres component's members."""
    from psycopg.conninfo import make_conninfo

    from spofless.security import client_params

    comp = topology.components[target.to]
    if comp.kind == "postgres":
        db = target.to
    else:
        routes = getattr(comp, "routes", [])
        pg = [r.to for r in routes if topology.components[r.to].kind == "postgres"]
        if not pg:
            raise DrillError(f"{target.to} routes to no postgres component")
        db = pg[0]
    addresses = _instances_addresses(topology, target.to)
    hosts = ",".join(a.rpartition(":")[0] for a in addresses)
    ports = ",".join(a.rpartition(":")[2] for a in addresses)
    return make_conninfo(
        host=hosts,
        port=ports,
        user="postgres",
        dbname="postgres",
        connect_timeout=2,
        target_session_attrs=attrs if comp.kind == "postgres" else "any",
        **client_params(topology, db),
    )


def make_streams(
    topology: Topology, specs: Sequence[TrafficSpec], t0: float, first_id: int
) -> list[Stream]:
    """One stream per spec, named `http-<i>` / `sql-<i>`; SQL ids start at `first_id`."""
    streams: list[Stream] = []
    for i, spec in enumerate(specs):
        if spec.http is not None:
            h = spec.http
            probe = http_probe(http_addresses(topology, h), h.path, h.method, h.body, h.timeout)
            where = h.to or h.name or h.address
            streams.append(
                ProbeStream(
                    f"http-{i} {h.method} via {h.via} {where}{h.path}", probe, t0, spec.rate
                )
            )
        elif spec.sql_reads is not None:
            r = spec.sql_reads
            probe = sql_read_probe(sql_conninfo(topology, r, "prefer-standby"), r.timeout)
            streams.append(ProbeStream(f"sqlr-{i} reads from {r.to}", probe, t0, spec.rate))
        elif spec.tcp is not None:
            probe = tcp_probe(_instances_addresses(topology, spec.tcp.to), spec.tcp.timeout)
            streams.append(ProbeStream(f"tcp-{i} connect {spec.tcp.to}", probe, t0, spec.rate))
        elif spec.sql_writes is not None:
            s = spec.sql_writes
            streams.append(
                SqlStream(
                    f"sql-{i} writes to {s.to}",
                    sql_conninfo(topology, s),
                    s.table,
                    t0,
                    spec.rate,
                    first_id + i * 10**8,
                )
            )
    return streams
