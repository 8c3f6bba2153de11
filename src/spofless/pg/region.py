"""`spofless pg promote-region FILE --region R`: make the standby cluster in region R the
primary cluster of its group, with the old primary cluster fenced first.

    1. Find the group (a postgres component and its `standby_of` clusters), the cluster
       in region R and which cluster is primary now (each cluster's `P/standby` key in
       its own etcd, else the topology).
    2. The old primary cluster's etcd cannot be reached: refuse, unless `force` (its
       primary may still accept writes; what it acknowledged after the last byte the
       standby received is lost). Otherwise, planned: the standby leader must stream.
    3. Fence: the old cluster's `P/standby` names the new one; its leader steps down
       (fast shutdown, keeps the lease, records where its WAL ends in `P/demoted`).
       Wait until it has, and until no member of the old cluster accepts writes (asked
       over SQL: in recovery, or not answering).
    4. Catch up (planned): the new cluster's leader must have received past the old
       primary's last WAL byte (0 lag) within `catch_up` seconds; if not, the old
       cluster is made primary again and nothing changed.
    5. Promote: the new cluster's `P/standby` says primary; its leader promotes, its
       members follow. The write pause is from the fence to the first writable member.
       With `auto_promote` in the group, the quorum etcd's region owner names the new
       cluster first (spofless.pg._region), else the old one would take the region back;
       a quorum that cannot be reached is refused in step 1, whatever `force` says.

Afterwards the old cluster is a standby of the new one: its old primary rejoins
through pg_rewind once the new primary answers, its members follow it. Failback is
the same command for the old cluster's region once it has caught up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import make_conninfo

from spofless.dcs import DCSError, DCSSettings, Delete, EtcdStore, KeyValueStore, Put
from spofless.pg._from_topology import (
    cluster_prefix,
    etcd_endpoints,
    member_name,
    region_settings,
)
from spofless.pg._region import Claim
from spofless.pg.ops import PgOpError, Target, target
from spofless.pg.view import format_lsn, optional_lsn
from spofless.security import SecretsError, client_params
from spofless.topology import PostgresComponent, Topology

logger = logging.getLogger(__name__)

T = TypeVar("T")
ETCD_BOUND = 3.0  # seconds to reach one cluster's etcd
SQL_TIMEOUT = 2  # libpq connect timeout to one member, seconds


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster of the group as the command reaches it."""

    name: str  # its postgres component
    region: str | None
    target: Target
    members: tuple[tuple[str, str, int], ...]  # (member, host, port)
    topology_standby_of: str | None


@dataclass(frozen=True, slots=True)
class PromoteReport:
    new: str
    old: str | None  # the cluster that was primary (None: none was)
    fenced: bool  # the old cluster was reached and made read-only first
    final_lsn: int | None  # where the old primary's WAL ended (planned case)
    write_pause: float  # seconds from the fence (or the start) to the first write accepted
    new_leader: str | None

    def lines(self) -> list[str]:
        out = []
        if self.old is None:
            out.append("no cluster was primary")
        elif self.fenced:
            out.append(f"fenced {self.old}: no member accepts writes")
            if self.final_lsn is not None:
                out.append(
                    f"{self.new} received everything up to {format_lsn(self.final_lsn)} "
                    "(0 lag) before promoting"
                )
        else:
            out.append(
                f"{self.old} was not reached (--force): it was NOT fenced; its agents make it "
                f"a standby of {self.new} when they can reach {self.new}'s etcd"
            )
        out.append(f"{self.new} is the primary cluster (leader {self.new_leader or '?'})")
        out.append(f"write pause: {self.write_pause:.2f} s")
        return out


def group(topology: Topology, region: str, component: str | None) -> tuple[Cluster, ...]:
    """The clusters of the group that has a cluster in `region`, the one there first."""
    if region not in topology.regions:
        known = ", ".join(topology.regions) or "none"
        raise PgOpError(f"{topology.source}: no region {region!r} (regions: {known})")
    here = []
    for name, comp in topology.components.items():
        if not isinstance(comp, PostgresComponent) or len(topology.cluster_group(name)) < 2:
            continue
        if component is not None and component not in topology.cluster_group(name):
            continue
        if _region(topology, name) == region:
            here.append(name)
    if not here:
        raise PgOpError(
            f"{topology.source}: no postgres cluster with a standby cluster (standby_of) has "
            f"all its instances in region {region!r}"
        )
    if len(here) > 1:
        raise PgOpError(
            f"{topology.source}: clusters {', '.join(here)} are in region {region!r}: "
            "name one with --component"
        )
    names = topology.cluster_group(here[0])
    ordered = [here[0], *(n for n in names if n != here[0])]
    return tuple(_cluster(topology, n) for n in ordered)


def _region(topology: Topology, component: str) -> str | None:
    regions = {
        topology.hosts[i.host].region if i.host is not None else None
        for i in topology.instances[component]
    }
    return regions.pop() if len(regions) == 1 else None


def _cluster(topology: Topology, name: str) -> Cluster:
    comp = topology.components[name]
    assert isinstance(comp, PostgresComponent) and comp.port is not None
    members = tuple(
        (
            member_name(name, i.index),
            topology.hosts[i.host].address if i.host is not None else "127.0.0.1",
            comp.port + i.index,
        )
        for i in topology.instances[name]
    )
    t = target(topology, name)
    assert t.prefix == cluster_prefix(topology, name) and t.endpoints == etcd_endpoints(
        topology, name
    )
    return Cluster(name, _region(topology, name), t, members, comp.standby_of)


async def _bounded(what: Awaitable[T], bound: float = ETCD_BOUND) -> T:
    async with asyncio.timeout(bound):
        return await what


@dataclass
class _Reached:
    cluster: Cluster
    store: KeyValueStore | None  # None: its etcd did not answer
    standby_of: str | None = None
    epoch: int = 0
    why: str = ""


async def _reach(c: Cluster) -> _Reached:
    store = c.target.store()
    try:
        res = await _bounded(store.range(f"{c.target.prefix}/standby"))
    except (DCSError, TimeoutError, OSError) as exc:
        await store.close()
        return _Reached(c, None, why=str(exc) or type(exc).__name__)
    if not res.kvs:
        return _Reached(c, store, c.topology_standby_of)
    try:
        d = json.loads(res.kvs[0].value)
        return _Reached(c, store, d.get("of") or None, int(d.get("epoch", 0)))
    except (ValueError, TypeError, AttributeError):
        await store.close()
        raise PgOpError(
            f"{c.target.prefix}/standby in {c.name}'s etcd is unreadable "
            f"({res.kvs[0].value!r}): nothing changed"
        ) from None


async def promote_region(
    topology: Topology,
    region: str,
    *,
    component: str | None = None,
    force: bool = False,
    bound: float = 60.0,
    catch_up: float = 30.0,
) -> PromoteReport:
    """Promote the standby cluster in `region` (see the module docstring)."""
    clusters = group(topology, region, component)
    try:
        auth: dict[str, str] = dict(client_params(topology, clusters[0].name))
    except SecretsError as exc:
        raise PgOpError(str(exc)) from None
    quorum = _Quorum.of(topology, clusters[0])
    if quorum is not None:
        await quorum.read()
    reached = await asyncio.gather(*(_reach(c) for c in clusters))
    try:
        return await _promote(reached, auth, quorum, force=force, bound=bound, catch_up=catch_up)
    finally:
        for r in reached:
            if r.store is not None:
                await r.store.close()
        if quorum is not None:
            await quorum.store.close()


@dataclass
class _Quorum:
    """The group's region lease keys in its quorum etcd (`auto_promote`)."""

    store: EtcdStore
    prefix: str
    owner: Claim | None = None

    @classmethod
    def of(cls, topology: Topology, c: Cluster) -> _Quorum | None:
        region = region_settings(topology, c.name)
        if region is None:
            return None
        return cls(EtcdStore(list(region.endpoints), DCSSettings(tls=c.target.tls)), region.prefix)

    async def read(self) -> None:
        try:
            kv = await _bounded(self.store.get(f"{self.prefix}/owner"))
        except (DCSError, TimeoutError, OSError) as exc:
            await self.store.close()
            raise PgOpError(
                f"cannot reach the quorum etcd of the group's auto_promote "
                f"({exc or type(exc).__name__}): from here the other side of a partition may "
                "hold the region and promote by itself. Nothing changed"
            ) from None
        self.owner = Claim.parse(kv.value) if kv is not None else None

    async def move(self, cluster: str, epoch: int) -> None:
        p = self.prefix
        claim = Claim(cluster, epoch).to_json()
        await _bounded(self.store.txn([], [Put(f"{p}/owner", claim), Delete(f"{p}/lease")]))


async def _promote(
    reached: list[_Reached],
    auth: dict[str, str],
    quorum: _Quorum | None,
    *,
    force: bool,
    bound: float,
    catch_up: float,
) -> PromoteReport:
    new, others = reached[0], reached[1:]
    if new.store is None:
        raise PgOpError(f"cannot reach {new.cluster.name}'s etcd ({new.why}): nothing changed")
    if new.standby_of is None:
        raise PgOpError(f"{new.cluster.name} is the primary cluster already: nothing changed")
    olds = [r for r in others if r.store is None or r.standby_of is None]
    lost = [r for r in olds if r.store is None]
    if lost and not force:
        names = ", ".join(f"{r.cluster.name} (region {r.cluster.region})" for r in lost)
        raise PgOpError(
            f"cannot reach the etcd of {names}: it cannot be fenced and may still accept "
            "writes, so promoting now could make two primaries. Nothing changed. If that "
            "region is really lost, run again with --force: writes it acknowledged after the "
            f"last WAL {new.cluster.name} received are lost; when it comes back, its agents "
            "find the newer primary cluster before acting and become its standby"
        )
    epoch = 1 + max(
        *(r.epoch for r in reached), quorum.owner.epoch if quorum and quorum.owner else 0
    )
    old = next((r for r in olds if r.store is not None), None)
    if old is None and lost:
        old = lost[0]
    sql = _Sql(auth)
    started = time.monotonic()
    final: int | None = None
    fenced = False
    if old is not None and old.store is not None:
        await _check_streaming(new, sql)
        started = time.monotonic()
        final = await _fence(old, new.cluster.name, epoch, sql, bound)
        fenced = True
        if final is not None:
            await _catch_up(old, new, final, sql, catch_up)
    # Every other cluster follows the new primary too (a third region's standby).
    for r in others:
        if r is not old and r.store is not None and r.standby_of != new.cluster.name:
            await _set_standby(r, new.cluster.name, epoch)
    assert new.store is not None
    if quorum is not None:
        await quorum.move(new.cluster.name, epoch)
    p = new.cluster.target.prefix
    await _bounded(
        new.store.txn(
            [],
            [Put(f"{p}/standby", json.dumps({"of": None, "epoch": epoch})), Delete(f"{p}/demoted")],
        )
    )
    leader = await _wait(
        lambda: sql.writable(new.cluster), bound, f"{new.cluster.name} did not accept writes"
    )
    return PromoteReport(
        new=new.cluster.name,
        old=old.cluster.name if old is not None else None,
        fenced=fenced,
        final_lsn=final,
        write_pause=time.monotonic() - started,
        new_leader=leader,
    )


async def _set_standby(r: _Reached, of: str | None, epoch: int) -> None:
    assert r.store is not None
    value = json.dumps({"of": of, "epoch": epoch})
    await _bounded(r.store.put(f"{r.cluster.target.prefix}/standby", value))


async def _wait(check: Callable[[], Awaitable[T | None]], bound: float, failure: str) -> T:
    deadline = time.monotonic() + bound
    while True:
        got = await check()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise PgOpError(f"{failure} within {bound:g}s")
        await asyncio.sleep(0.1)


async def _check_streaming(new: _Reached, sql: _Sql) -> None:
    """Planned: the standby cluster's leader must stream from the primary cluster now."""
    c = new.cluster
    rows = await sql.on_any(
        c,
        "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver) = 'streaming'"
        " AND (SELECT slot_name FROM pg_stat_wal_receiver) LIKE 'spofless_standby_%'",
    )
    if not any(r[0] and r[1] for r in rows):
        raise PgOpError(
            f"{c.name}'s leader does not stream from the primary cluster now: promoting it "
            "would lose what it has not received. Nothing changed; see `spofless status`"
        )


async def _fence(old: _Reached, new: str, epoch: int, sql: _Sql, bound: float) -> int | None:
    """Make `old` a standby of `new`; wait until its leader has stepped down and no member
    accepts writes. Where its WAL ended (None: it had no leader to record it)."""
    assert old.store is not None
    c, store = old.cluster, old.store
    p = c.target.prefix
    leader = await _bounded(store.range(f"{p}/leader"))
    await _bounded(store.delete(f"{p}/demoted"))
    await _set_standby(old, new, epoch)
    logger.warning("fencing %s: it is a standby of %s now", c.name, new)

    async def fenced() -> tuple[int | None] | None:
        if await sql.writable(c) is not None:
            return None
        if not leader.kvs:
            return (None,)
        res = await _bounded(store.range(f"{p}/demoted"))
        if not res.kvs:
            return None
        lsn = json.loads(res.kvs[0].value).get("lsn")
        return (int(lsn) if lsn is not None else None,)

    try:
        (final,) = await _wait(fenced, bound, f"{c.name} was not fenced")
    except PgOpError:
        await _set_standby(old, None, old.epoch)  # undo: it is the primary cluster again
        raise
    return final


async def _catch_up(old: _Reached, new: _Reached, final: int, sql: _Sql, bound: float) -> None:
    """The new cluster's leader must hold every byte the old primary wrote."""

    async def received() -> bool | None:
        rows = await sql.on_any(new.cluster, "SELECT pg_last_wal_receive_lsn()::text")
        best = max((optional_lsn(r[0]) or 0 for r in rows), default=0)
        return True if best > final else None

    try:
        await _wait(
            received, bound, f"{new.cluster.name} did not receive up to {format_lsn(final)}"
        )
    except PgOpError as exc:
        await _set_standby(old, None, old.epoch)
        raise PgOpError(f"{exc}: {old.cluster.name} is the primary cluster again") from None


class _Sql:
    """Short SQL questions to every member of a cluster, as its superuser."""

    def __init__(self, auth: dict[str, str]) -> None:
        self.auth = auth

    async def one(self, host: str, port: int, query: str) -> tuple[Any, ...] | None:
        try:
            conninfo = make_conninfo(
                "",
                host=host,
                port=port,
                user="postgres",
                dbname="postgres",
                connect_timeout=SQL_TIMEOUT,
                application_name="spofless-promote-region",
                **self.auth,
            )
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                cur = await conn.execute(query)
                return await cur.fetchone()
        except (psycopg.Error, OSError):
            return None

    async def on_any(self, c: Cluster, query: str) -> list[tuple[Any, ...]]:
        rows = await asyncio.gather(*(self.one(h, p, query) for _, h, p in c.members))
        return [r for r in rows if r is not None]

    async def writable(self, c: Cluster) -> str | None:
        """The member of `c` that accepts writes now, if any."""
        rows = await asyncio.gather(
            *(self.one(h, p, "SELECT NOT pg_is_in_recovery()") for _, h, p in c.members)
        )
        return next((m for (m, _, _), r in zip(c.members, rows, strict=True) if r and r[0]), None)
