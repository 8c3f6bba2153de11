"""The cluster's etcd keys read into a ClusterState: pure, and robust to bad values.

A value that does not parse (an operator's typo in `config`, a half-written key)
is skipped with a warning naming the key, never a crash of the agent's loop.

Keys under the cluster prefix P (all JSON except the leader key):

    P/leader            the member name; the election key (fencing token = create revision)
    P/initialize        the system identifier of the bootstrapped cluster
    P/members/<name>    each member's published MemberStatus, on the member's own lease
    P/optime            the leader's last WAL position (fenced write)
    P/sync              the leader's SyncState (fenced write)
    P/config            {"paused": bool}
    P/switchover        {"leader": name|null, "candidate": name|null}: an operator's request
    P/standby           {"of": cluster|null, "epoch": n}: which cluster this one copies
                        (`spofless pg promote-region`); absent: the topology's standby_of
    P/demoted           {"member", "lsn", "timeline"}: where the last primary's WAL ended
                        when its cluster was made a standby (spofless.pg._standby)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from spofless.dcs import KeyValue
from spofless.pg._terms import parse_degraded_json, parse_history_json, parse_lost_json
from spofless.pg.api import MemberStatus
from spofless.pg.view import ClusterState, LeaderKey, Member, Switchover, SyncState

logger = logging.getLogger(__name__)


def parse_cluster(
    prefix: str, kvs: Iterable[KeyValue], standby_of: str | None = None
) -> tuple[ClusterState, tuple[MemberStatus, ...]]:
    """The cluster state under `prefix` and every member's published status, by name.

    `standby_of`: the topology's, which the `standby` key (written by `spofless pg
    promote-region`) overrides."""
    p = prefix.rstrip("/") + "/"
    fields: dict[str, Any] = {"members": {}, "standby_of": standby_of}
    statuses: list[MemberStatus] = []
    for kv in kvs:
        key = kv.key[len(p) :]
        try:
            _apply(key, kv, fields, statuses)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            logger.warning("ignoring %s: unreadable value (%s)", kv.key, exc)
    state = ClusterState(**fields)
    return state, tuple(sorted(statuses, key=lambda m: m.name))


def _apply(key: str, kv: KeyValue, f: dict[str, Any], statuses: list[MemberStatus]) -> None:
    if key == "leader":
        f["leader"] = LeaderKey(kv.value, kv.create_revision)
    elif key == "initialize":
        f["initialized"] = True
        f["system_id"] = kv.value or None
    elif key == "optime":
        f["leader_wal_position"] = int(kv.value)
    elif key == "config":
        f["paused"] = bool(json.loads(kv.value).get("paused", False))
    elif key == "switchover":
        d = json.loads(kv.value)
        f["switchover"] = Switchover(d.get("leader"), d.get("candidate"))
    elif key == "sync":
        d = json.loads(kv.value)
        f["sync"] = SyncState(
            d.get("leader"), frozenset(d.get("members", ())), d.get("pending"), d.get("pending_lsn")
        )
    elif key == "history":
        f["history"] = parse_history_json(kv.value)
    elif key == "degraded":
        f["degraded"] = parse_degraded_json(kv.value)
    elif key == "lost":
        f["lost"] = parse_lost_json(kv.value)
    elif key == "standby":
        d = json.loads(kv.value)
        f["standby_of"] = str(d["of"]) if d.get("of") else None
        f["standby_epoch"] = int(d.get("epoch", 0))
    elif key.startswith("discard/"):
        f["discard"] = f.get("discard", frozenset()) | {key[len("discard/") :]}
    elif key.startswith("members/"):
        d = json.loads(kv.value)
        ms = MemberStatus.from_json(d)
        statuses.append(ms)
        f["members"][ms.name] = Member(
            ms.name, ms.role, ms.running, ms.timeline, ms.wal_position, reachable=True
        )
