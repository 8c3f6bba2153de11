"""A PostgreSQL client for a spofless cluster: writes to the primary, reads to replicas.

    db = Database.from_topology("examples/postgres-ha.yaml")
    db.execute("INSERT INTO t VALUES (%s) ON CONFLICT DO NOTHING", (1,), idempotent=True)
    rows = db.execute("SELECT * FROM t", read_only=True)
    with db.transaction() as conn:           # one transaction on the primary
        conn.execute(...)

- Members come from the agents' `/cluster` endpoints (any agent answers for all)
  or, given etcd endpoints and the cluster prefix, from etcd's member keys.
- Writes go to the member whose agent holds the leader lease; reads go round-robin
  to streaming replicas and fall back to the primary when none is healthy.
- One psycopg_pool per member, opened on first use and checked before handing
  out a connection (a pool of a failed server fails fast instead of hanging).
- When a connection fails during a failover, the call is retried on the new
  primary (the members are read again, within `failover_timeout`) only if it is
  safe to repeat: the connection failed before the statement was sent, or the
  caller said the operation is idempotent. Otherwise the error is raised: the
  write may or may not have committed, and only the caller can tell.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from spofless.errors import SpoflessError

if TYPE_CHECKING:
    from spofless.dcs import EtcdTls

logger = logging.getLogger(__name__)

T = TypeVar("T")
__all__ = ["Database", "Member", "NoPrimary", "choose_reader", "members_from_cluster_json"]


class NoPrimary(SpoflessError):
    """No member is the writable primary (within the failover timeout)."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    dsn: str
    primary: bool  # running, primary, holding the leader lease
    replica: bool  # running, streaming from the primary


def members_from_cluster_json(body: Mapping[str, Any]) -> list[Member]:
    """Members from an agent's /cluster JSON (or the member keys' JSON values)."""
    from spofless.pg.api import MemberStatus
    from spofless.pg.view import Role

    out = []
    for raw in body.get("members", []):
        try:
            m = MemberStatus.from_json(raw)
        except ValueError:
            continue  # one unreadable member is no reason to lose the others
        if not m.dsn or not m.running:
            continue
        out.append(
            Member(
                name=m.name,
                dsn=m.dsn,
                primary=m.role is Role.PRIMARY and m.leader,
                replica=m.role is Role.REPLICA and m.streaming,
            )
        )
    return sorted(out, key=lambda m: m.name)


def choose_reader(members: Sequence[Member], turn: int) -> Member | None:
    """The replica whose turn it is (round-robin); the primary when no replica is healthy."""
    replicas = [m for m in members if m.replica]
    if replicas:
        return replicas[turn % len(replicas)]
    return next((m for m in members if m.primary), None)


class Database:
    """A cluster's members, one connection pool per member, and the retry policy."""

    def __init__(
        self,
        discover: Callable[[], list[Member]],
        *,
        pool_size: int = 4,
        connect_timeout: float = 2.0,
        failover_timeout: float = 30.0,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        """`credentials`: libpq parameters added to every member's connection string
        (`password`, `sslmode`, `sslrootcert`, ...); `from_topology` fills them in."""
        self._discover = discover
        self.credentials = dict(credentials or {})
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.failover_timeout = failover_timeout
        self._members: list[Member] = []
        self._pools: dict[str, ConnectionPool[psycopg.Connection[Any]]] = {}
        self._turn = itertools.count()
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_agents(cls, api_urls: Sequence[str], **kw: Any) -> Database:
        """Members from the agents' HTTP APIs (`http://host:port`); any one suffices."""

        def discover() -> list[Member]:
            for url in api_urls:
                try:
                    r = httpx.get(f"{url.rstrip('/')}/cluster", timeout=1.0)
                    return members_from_cluster_json(r.json())
                except (httpx.HTTPError, ValueError):
                    continue
            return []

        return cls(discover, **kw)

    @classmethod
    def from_etcd(
        cls, endpoints: Sequence[str], prefix: str, *, tls: EtcdTls | None = None, **kw: Any
    ) -> Database:
        """Members from etcd: the member keys the agents publish under `prefix`; `tls`: the
        CA and client certificate etcd requires (spofless.security.etcd_client_tls)."""
        from spofless.dcs._etcd_codec import decode_kv, range_request

        verify = tls.client_context() if tls is not None else True
        # The request and its answer in etcd's own JSON, as spofless.dcs writes and reads
        # them (this client is synchronous: one POST, not the asynchronous store).
        body = range_request(f"{prefix.rstrip('/')}/members/", prefix=True)

        def discover() -> list[Member]:
            for url in endpoints:
                try:
                    r = httpx.post(
                        f"{url.rstrip('/')}/v3/kv/range", json=body, timeout=1.0, verify=verify
                    )
                    kvs = [decode_kv(kv) for kv in r.json().get("kvs", [])]
                    values = [json.loads(kv.value) for kv in kvs]
                    return members_from_cluster_json({"members": values})
                except (httpx.HTTPError, ValueError, KeyError):
                    continue
            return []

        return cls(discover, **kw)

    @classmethod
    def from_topology(cls, file: str | Path, component: str | None = None, **kw: Any) -> Database:
        """Members of a topology's postgres component, found through its etcd; the
        superuser's password, the CA and etcd's client certificate come from the
        topology's secrets (pass `credentials=` to connect as another user)."""
        from spofless.pg.ops import target
        from spofless.security import client_params, etcd_client_tls
        from spofless.topology import load_topology

        topology = load_topology(Path(file))
        t = target(topology, component)
        if "credentials" not in kw:
            kw["credentials"] = client_params(topology, t.prefix.rsplit("/", 1)[-1])
        return cls.from_etcd(t.endpoints, t.prefix, tls=etcd_client_tls(topology), **kw)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- using it ---------------------------------------------------------------------

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        read_only: bool = False,
        idempotent: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; its rows ([] when it returns none)."""

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

        return self.run(run, read_only=read_only, idempotent=idempotent or read_only)

    @contextlib.contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on the primary (or a replica); never retried, it is the caller's."""
        member = self._pick(read_only)
        with self._pool(member).connection() as conn, conn.transaction():
            yield conn

    def run(
        self,
        fn: Callable[[psycopg.Connection[Any]], T],
        *,
        read_only: bool = False,
        idempotent: bool = False,
    ) -> T:
        """fn(conn) in one transaction, retried across a failover when that is safe."""
        deadline = time.monotonic() + self.failover_timeout
        while True:
            sent = False
            try:
                member = self._pick(read_only)
                with self._pool(member).connection(timeout=self.connect_timeout) as conn:
                    sent = True
                    with conn.transaction():
                        return fn(conn)
            except (
                psycopg.OperationalError,
                psycopg.errors.ReadOnlySqlTransaction,  # a demoted primary: nothing written
                PoolTimeout,
                NoPrimary,
            ) as exc:
                if sent and not idempotent and isinstance(exc, psycopg.OperationalError):
                    raise
                if time.monotonic() > deadline:
                    raise NoPrimary(
                        f"no usable member within {self.failover_timeout:g}s: {exc}"
                    ) from exc
                logger.info("retrying after a connection failure: %s", exc)
                self.refresh()
                time.sleep(0.1)

    # -- members and pools ------------------------------------------------------------

    def refresh(self) -> list[Member]:
        members = self._discover()
        with self._lock:
            self._members = members
        return members

    def _pick(self, read_only: bool) -> Member:
        members = self._members or self.refresh()
        if read_only:
            chosen = choose_reader(members, next(self._turn))
        else:
            chosen = next((m for m in members if m.primary), None)
        if chosen is None:
            raise NoPrimary("no primary among the members" + (" or replicas" if read_only else ""))
        return chosen

    def _pool(self, member: Member) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            pool = self._pools.get(member.dsn)
            if pool is None:
                pool = ConnectionPool(
                    make_conninfo(
                        member.dsn,
                        connect_timeout=max(2, int(self.connect_timeout)),
                        **self.credentials,
                    ),
                    min_size=0,
                    max_size=self.pool_size,
                    open=True,
                    check=ConnectionPool.check_connection,
                    name=member.name,
                )
                self._pools[member.dsn] = pool
        return pool
