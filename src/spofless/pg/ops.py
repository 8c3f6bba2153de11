"""Operator commands on a running cluster, through the etcd keys the agents read.

    spofless pg pause FILE       automatic failover off (P/config {"paused": true})
    spofless pg resume FILE      automatic failover on again
    spofless pg switchover FILE [--to NODE]   planned: the leader stops writes, lets
                                 the candidate receive everything, hands the lease over
    spofless pg failover FILE --to NODE       manual: NODE takes over whoever leads
    spofless pg rejoin FILE --member NODE --discard   let NODE discard divergent WAL that
                                 may hold commits acknowledged while synchronous mode was
                                 degraded (P/discard/NODE), once they are saved or given up

Each command returns once the agents have done it, or raises PgOpError after a
bound (a switchover that did not happen is withdrawn, so it cannot fire later).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from spofless.dcs import Compare, DCSSettings, Delete, EtcdStore, EtcdTls, KeyValueStore, Put
from spofless.pg._errors import PgError
from spofless.pg._from_topology import (
    cluster_prefix,
    etcd_endpoints,
    etcd_tls,
    member_name,
    postgres_component,
)
from spofless.topology import CannotRunError, PostgresComponent, Topology


class PgOpError(PgError):
    """An operator command could not be carried out (nothing was changed, or it was undone)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one postgres component keeps its state in etcd."""

    prefix: str
    endpoints: list[str]
    members: list[str]
    tls: EtcdTls | None = None  # the client certificate etcd requires, with TLS on
    # Why there is no certificate although TLS is on: said when etcd is to be reached,
    # after the arguments were checked.
    tls_missing: str | None = None

    def store(self) -> EtcdStore:
        if self.tls_missing is not None:
            raise PgOpError(self.tls_missing)
        return EtcdStore(self.endpoints, DCSSettings(tls=self.tls))


def target(topology: Topology, component: str | None) -> Target:
    """The postgres component named, or the only one in the topology."""
    if component is None:
        names = [n for n, c in topology.components.items() if isinstance(c, PostgresComponent)]
        if len(names) != 1:
            raise PgOpError(
                f"{topology.source}: {len(names)} postgres components"
                f"{' (' + ', '.join(names) + ')' if names else ''}: name one with --component"
            )
        component = names[0]
    postgres_component(topology, component)
    count = len(topology.instances[component])
    tls, missing = None, None
    try:
        tls = etcd_tls(topology)
    except CannotRunError as exc:
        missing = str(exc)
    return Target(
        cluster_prefix(topology, component),
        etcd_endpoints(topology, component),
        [member_name(component, i) for i in range(count)],
        tls,
        missing,
    )


async def _leader(store: KeyValueStore, prefix: str) -> str | None:
    res = await store.range(f"{prefix}/leader")
    return res.kvs[0].value if res.kvs else None


async def set_paused(t: Target, paused: bool) -> None:
    """Turn automatic failover off (paused) or on; the agents read it on their next loop."""
    store = t.store()
    try:
        await store.put(f"{t.prefix}/config", json.dumps({"paused": paused}))
    finally:
        await store.close()


async def switchover(
    t: Target, candidate: str | None, *, failover: bool = False, bound: float = 30.0
) -> tuple[str | None, str]:
    """Ask for a switchover (or a manual failover) and wait until a new leader leads.

    Returns (old leader, new leader). Raises PgOpError, after withdrawing the request,
    when it did not happen within `bound` seconds.
    """
    if candidate is not None:
        # As `status` shows it (db/1) or as etcd names it (db-1).
        if candidate.replace("/", "-") not in t.members:
            raise PgOpError(f"--to {candidate}: no such member (members: {', '.join(t.members)})")
        candidate = candidate.replace("/", "-")
    store = t.store()
    key = f"{t.prefix}/switchover"
    try:
        old = await _leader(store, t.prefix)
        if old is None and not failover:
            raise PgOpError("no leader now: a switchover needs one (use failover --to NODE)")
        if candidate is not None and candidate == old:
            raise PgOpError(f"{candidate} already leads")
        request = {"leader": None if failover else old, "candidate": candidate}
        res = await store.txn(
            [Compare.create_revision(key, "==", 0)], [Put(key, json.dumps(request))]
        )
        if not res.succeeded:
            raise PgOpError(f"a switchover is already in progress ({key} exists)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        while loop.time() < deadline:
            now = await _leader(store, t.prefix)
            pending = (await store.range(key)).kvs
            if now is not None and now != old and not pending:
                return old, now
            await asyncio.sleep(0.1)
        await store.txn([], [Delete(key)])
        raise PgOpError(f"no new leader within {bound:g}s; the request was withdrawn")
    finally:
        await store.close()


def member_of(t: Target, name: str) -> str:
    """A member as `status` shows it (`db/1`) or as etcd names it (`db-1`)."""
    wanted = name.replace("/", "-")
    if wanted not in t.members:
        raise PgOpError(f"no member {name!r} (members: {', '.join(t.members)})")
    return wanted


async def allow_discard(t: Target, member: str) -> None:
    """Let `member` discard its divergent WAL; its agent rejoins on its next loop and
    removes the permission once it has."""
    store = t.store()
    try:
        await store.put(f"{t.prefix}/discard/{member}", "")
    finally:
        await store.close()
