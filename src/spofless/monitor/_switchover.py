"""The switchover requests of every PostgreSQL component, watched in etcd.

    switchover_keys(topology) -> {component: (key, etcd client URLs)}
    watch_requests(component, key, store, leaders)   until cancelled

`spofless pg switchover` (and `pg failover --to`) writes the request key
`<prefix>/switchover` {"leader": old|null, "candidate": name|null}; the new
leader deletes it as it starts to lead (spofless.pg). The monitor's looks at
the agents are too far apart to be sure to see a key that lives for less than
a look, so the key is watched: every put is a request (`LeaderWatch.requested`)
and every delete its end, each exactly once, from the key's value when the
watch starts. The watch resumes where it stopped when etcd comes back (a
compacted revision: read again); an etcd that does not answer is tried again
every RETRY seconds and delays nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from spofless.dcs import CompactedError, DCSError, KeyValue, KeyValueStore
from spofless.monitor._leaders import LeaderWatch
from spofless.topology import CannotRunError, PostgresComponent, Topology

logger = logging.getLogger(__name__)

RETRY = 1.0


def switchover_keys(topology: Topology) -> dict[str, tuple[str, list[str]]]:
    """Each postgres component's request key and the client URLs of its etcd."""
    from spofless.pg import ops

    out: dict[str, tuple[str, list[str]]] = {}
    for name, comp in sorted(topology.components.items()):
        if not isinstance(comp, PostgresComponent):
            continue
        try:
            t = ops.target(topology, name)
        except CannotRunError as exc:  # its agents cannot run either: nothing to watch
            logger.warning("%s: switchover requests not watched: %s", name, exc)
            continue
        out[name] = (f"{t.prefix}/switchover", t.endpoints)
    return out


def _member(component: str, name: object) -> str | None:
    """`db-1` (etcd's name) -> `db/1` (the monitor's)."""
    if not isinstance(name, str) or not name:
        return None
    head = f"{component}-"
    return f"{component}/{name[len(head) :]}" if name.startswith(head) else name


def _put(component: str, kv: KeyValue, leaders: LeaderWatch, now: float) -> None:
    try:
        d = json.loads(kv.value)
        leader, candidate = d.get("leader"), d.get("candidate")
    except (ValueError, AttributeError):
        logger.warning("%s: unreadable switchover request %r", component, kv.value)
        return
    leaders.requested(component, _member(component, leader), _member(component, candidate), now)
    logger.info("%s: switchover requested (leader %s, candidate %s)", component, leader, candidate)


async def watch_requests(
    component: str, key: str, store: KeyValueStore, leaders: LeaderWatch
) -> None:
    """Feed `leaders` every request put on `key` and every delete, until cancelled."""
    revision = 0
    while True:
        try:
            if revision == 0:
                res = await store.range(key)
                if res.kvs:
                    _put(component, res.kvs[0], leaders, time.time())
                revision = res.revision + 1
            async with await store.watch(key, start_revision=revision) as w:
                async for event in w:
                    revision = event.revision + 1
                    if event.type == "put":
                        _put(component, event.kv, leaders, time.time())
                    else:
                        leaders.request_ended(component, time.time())
        except CompactedError:
            revision = 0  # read the key again
        except DCSError as exc:
            logger.debug("%s: switchover key not watched (%s); again in %gs", component, exc, RETRY)
            await asyncio.sleep(RETRY)
