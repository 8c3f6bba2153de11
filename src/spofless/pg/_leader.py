"""The leader's duties, each loop: slots for the other members, the optime, the
timeline history, the synchronous standby and the degraded ranges (fenced writes,
written before the settings they cover), and the fence witness that makes a
frozen primary unable to acknowledge (spofless.pg.witness).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence

from spofless.dcs import Compare, Delete, KeyValueStore, Op, Put
from spofless.pg._errors import PgCommandError
from spofless.pg._server_model import STANDBY_SLOT_PREFIX
from spofless.pg._terms import degraded_json, history_json, lost_json, next_degraded
from spofless.pg.server import PostgresServer, slot_name
from spofless.pg.sync import NO_STANDBY, StandbyRow, plan_sync, standby_names
from spofless.pg.view import LostRange, View
from spofless.pg.witness import (
    WITNESS_NAME,
    FenceWitness,
    with_witness,
    witness_standby_names,
)

logger = logging.getLogger(__name__)


class LeaderDuties:
    """The leader's part of one agent; `run(view, fence, system_id)` once per loop."""

    def __init__(
        self,
        name: str,
        server: PostgresServer,
        store: KeyValueStore,
        prefix: str,
        may_acknowledge: Callable[[], bool],
        *,
        synchronous: bool,
        fence_witness: bool,
        standby_slots: Sequence[str] = (),
        peer_prefixes: Sequence[str] = (),
        region_fence: bool = False,
    ) -> None:
        """`region_fence`: the group has a region lease (spofless.pg._region), which
        `may_acknowledge` checks: the witness is named beside a synchronous replica too."""
        self.name = name
        # The slots this cluster's leader keeps for its standby clusters while it is the
        # primary cluster, and the name prefixes of their members (never synchronous).
        self.standby_slots = tuple(standby_slots)
        self.peer_prefixes = tuple(peer_prefixes)
        self.server = server
        self.store = store
        self.p = prefix
        self.may_acknowledge = may_acknowledge
        self.synchronous = synchronous
        self.fence_witness = fence_witness
        self.region_fence = region_fence and fence_witness
        self.degraded = False  # synchronous mode fell back to asynchronous
        self._witness: FenceWitness | None = None
        self._witness_task: asyncio.Task[None] | None = None
        # The last WAL position a synchronous standby was seen to hold (this term).
        self._sync_held: int | None = None
        self._lost_report: tuple[LostRange, ...] = ()  # to record in etcd

    def promoted(self, position: int | None, lost: Sequence[LostRange] = ()) -> None:
        """A new term: everything before `position` is on the old timeline's members;
        `lost`: what of the previous degraded term this member lacks (reported once)."""
        self._sync_held = position
        self._lost_report = tuple(lost)

    async def run(self, view: View, fence: Compare, system_id: str | None) -> None:
        """Slots for every other member, the optime, the timeline history, synchronous
        standbys and degraded ranges (fenced writes, before the settings they cover)."""
        c, srv = view.cluster, self.server
        if c is None:
            return
        fenced = self._fence_ready()  # first: commits after a promotion wait for it
        others = [m for m in c.members if m != self.name]
        await srv.create_slots([*(slot_name(m) for m in others), *self.standby_slots])
        st = await srv.status()
        rows = [
            StandbyRow(r.name, r.state, r.sync_state, r.flush_lsn)
            for r in st.replication
            # A standby cluster's leader is across regions: never a synchronous standby.
            if r.name != WITNESS_NAME and not r.name.startswith(self.peer_prefixes)
        ]
        for row in st.replication:  # what the synchronous standby holds for certain
            if row.name in c.sync.members and row.sync_state == "sync" and row.flush_lsn:
                self._sync_held = max(self._sync_held or 0, row.flush_lsn)
        plan = plan_sync(self.name, view.policy, c.sync, rows, st.wal_position)
        ops: list[Op] = [Put(f"{self.p}/optime", str(st.wal_position or 0))]
        if plan.record is not None:
            r = plan.record
            record = {
                "leader": r.leader,
                "members": sorted(r.members),
                "pending": r.pending,
                "pending_lsn": r.pending_lsn,
            }
            ops.append(Put(f"{self.p}/sync", json.dumps(record)))
        if st.timeline is not None:
            if c.history is None or c.history.timeline != st.timeline:
                ops.append(Put(f"{self.p}/history", history_json(srv.history(st.timeline))))
            if view.policy.synchronous:
                pos = st.wal_position or 0
                ranges = next_degraded(
                    c.degraded,
                    leader=self.name,
                    timeline=st.timeline,
                    degraded=plan.degraded,
                    start=self._sync_held if self._sync_held is not None else pos,
                    position=pos,
                )
                if ranges is not None:
                    ops.append(Put(f"{self.p}/degraded", degraded_json(ranges)))
        if c.system_id is None and system_id:  # a bootstrap cut short by a lease loss
            ops.append(Put(f"{self.p}/initialize", system_id))
        if self._lost_report:
            ops.append(Put(f"{self.p}/lost", lost_json((*c.lost, *self._lost_report))))
        if c.switchover is not None and c.switchover.leader != self.name:
            ops.append(Delete(f"{self.p}/switchover"))  # done: I lead now
        res = await self.store.txn([fence], ops)
        if not res.succeeded:
            raise PgCommandError(f"{self.name}: leader key no longer mine; not writing")
        self._lost_report = ()
        names = plan.standby_names
        if names and self.region_fence and fenced:
            # A synchronous replica follows whoever leads in this cluster's etcd, region
            # lease or not: with a region lease the witness must acknowledge too.
            names = with_witness(names)
        if not names:
            if fenced or self._fence_ready():
                # No synchronous replica fences this primary: the witness does.
                names = witness_standby_names()
            elif srv.synchronous_standby_names == standby_names(NO_STANDBY):
                names = srv.synchronous_standby_names  # commits wait until the witness streams
        await srv.set_synchronous_standby_names(names)
        self.degraded = plan.degraded
        if plan.degraded:
            logger.warning("%s: %s", self.name, plan.reason)

    async def run_standby(self, view: View, fence: Compare) -> None:
        """A standby cluster's leader: slots for its members, its WAL position as the
        cluster's optime and its timeline history (fenced writes); no synchronous
        standbys, no witness (it acknowledges no commit)."""
        c, local, srv = view.cluster, view.local, self.server
        if c is None:
            return
        self.stop_witness()
        await srv.create_slots([slot_name(m) for m in c.members if m != self.name])
        # The slots it kept for standby clusters while it was a primary hold WAL forever.
        await srv.query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name LIKE %s AND NOT active",
            (STANDBY_SLOT_PREFIX + "%",),
        )
        ops: list[Op] = [Put(f"{self.p}/optime", str(local.wal_position or 0))]
        if local.timeline is not None and (
            c.history is None or c.history.timeline != local.timeline
        ):
            ops.append(Put(f"{self.p}/history", history_json(srv.history(local.timeline))))
        res = await self.store.txn([fence], ops)
        if not res.succeeded:
            raise PgCommandError(f"{self.name}: leader key no longer mine; not writing")
        self.degraded = False

    def _fence_ready(self) -> bool:
        """Start the witness if needed; whether it streams (only then may commits wait on it)."""
        if not self.fence_witness:
            return False
        if self._witness_task is None or self._witness_task.done():
            s = self.server.settings
            sock = f"{s.auth.socket_dir}/.s.PGSQL.{s.port}" if s.auth else None
            self._witness = FenceWitness(
                self.name, s.host, s.port, self.may_acknowledge, unix_socket=sock
            )
            self._witness_task = asyncio.create_task(
                self._witness.run(), name=f"fence witness {self.name}"
            )
        assert self._witness is not None
        # Once it has streamed, it stays named even while it reconnects: commits wait.
        named = self.server.synchronous_standby_names == witness_standby_names()
        return named or self._witness.streaming.is_set()

    def promotion_fence(self) -> str:
        """Until the first leader loop has recorded the synchronous state: synchronous mode
        waits for a standby (a degraded term must be recorded before it acknowledges
        alone); asynchronous mode for the witness."""
        if self.synchronous:
            return standby_names(NO_STANDBY)
        return witness_standby_names() if self.fence_witness else ""

    def stop_witness(self) -> None:
        if self._witness_task is not None:
            self._witness_task.cancel()
            self._witness_task = None
