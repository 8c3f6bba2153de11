"""The leader's fenced role changes: bootstrap a cluster under a claim, hand over in a
planned switchover (stop writes, let the candidate catch up), step down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from spofless.dcs import Compare, DCSError, Delete, KeyValueStore, Put
from spofless.pg._errors import PgCommandError
from spofless.pg.server import PostgresServer, Upstream
from spofless.pg.view import format_lsn, parse_lsn

logger = logging.getLogger(__name__)

CATCH_UP = 10.0  # seconds the candidate has to receive the last WAL byte


async def bootstrap(
    server: PostgresServer,
    store: KeyValueStore,
    fence: Compare,
    key: str,
    source: Upstream | None = None,
) -> str:
    """initdb under a claim; the new cluster's system identifier (the caller writes it to
    `key`, fenced). The `key` (initialize) is created first (fenced), so that a member
    winning the lease while this one runs initdb waits instead of bootstrapping a second
    cluster; on failure it is deleted again.

    `source`: a standby cluster is bootstrapped as a copy of its primary cluster
    (pg_basebackup through the route, then started as its standby)."""
    claim = await store.txn([fence, Compare.create_revision(key, "==", 0)], [Put(key, "")])
    if not claim.succeeded:
        raise PgCommandError(f"{server.name}: lost the lease or another member bootstraps")
    try:
        if source is not None:
            await server.clone(source)
            await server.start(upstream=source)
        else:
            await server.initdb()
            await server.start(standby=False)
            await server.create_roles()
        return (await server.controldata()).system_identifier or ""
    except BaseException:
        with contextlib.suppress(DCSError):
            await store.txn([fence], [Delete(key)])
        raise


async def hand_over(
    server: PostgresServer,
    store: KeyValueStore,
    fence: Compare,
    key: str,
    target: Upstream,
    catch_up: float = CATCH_UP,
) -> bool:
    """Stop writes and wait until `target` holds every byte; True: release the lease now.

    The request at `key` is rewritten (fenced) to name `target`, so that only it takes
    the lease. Fast shutdown makes PostgreSQL wait until its WAL senders have sent
    everything, the shutdown checkpoint included; the target is then checked to have
    received past it. If it has not within `catch_up`, the request is withdrawn, this
    primary starts again and False is returned.
    """
    name = server.name
    request = json.dumps({"leader": name, "candidate": target.name})
    res = await store.txn([fence], [Put(key, request)])
    if not res.succeeded:
        raise PgCommandError(f"{name}: leader key no longer mine; no switchover")
    logger.warning("%s: switchover to %s: stopping writes", name, target.name)
    await server.stop("fast")
    final = (await server.controldata()).checkpoint_lsn or 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + catch_up
    while True:
        try:
            rows = await server.query("SELECT pg_last_wal_receive_lsn()::text", on=target)
            received = parse_lsn(rows[0][0]) if rows and rows[0][0] else 0
        except PgCommandError:
            received = 0
        if received > final:
            logger.info(
                "%s: switchover: %s holds everything up to %s",
                name,
                target.name,
                format_lsn(final),
            )
            return True
        if loop.time() > deadline:
            logger.warning(
                "%s: switchover aborted: %s did not receive up to %s in %gs",
                name,
                target.name,
                format_lsn(final),
                catch_up,
            )
            await store.txn([fence], [Delete(key)])
            await server.start(standby=False)
            return False
        await asyncio.sleep(0.05)


async def step_down(
    server: PostgresServer, store: KeyValueStore, fence: Compare, key: str, name: str
) -> None:
    """Stop writes at once, keeping the leader lease: my cluster was made a standby, or it
    lost its region lease (spofless.pg._region). A fast shutdown: connections end,
    connected standbys receive every WAL byte first. Then record where my WAL ends under
    `key` (P/demoted), for `promote-region` to check that the new primary cluster holds
    all of it before it accepts writes."""
    await server.stop("fast")
    cd = await server.controldata()
    logger.warning(
        "%s: stepped down (no more writes); my WAL ends at %s on timeline %s",
        name,
        format_lsn(cd.checkpoint_lsn),
        cd.timeline,
    )
    record = {"member": name, "lsn": cd.checkpoint_lsn, "timeline": cd.timeline}
    res = await store.txn([fence], [Put(key, json.dumps(record))])
    if not res.succeeded:
        raise PgCommandError(f"{name}: leader key no longer mine; not recording")
