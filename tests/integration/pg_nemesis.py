"""Applies the drill's scheduled faults to a PgCluster, for real, and checks that the
cluster heals back to full redundancy after each one.

Used by tests/integration/test_pg_random_faults.py (short runs) and
benchmarks/pg_random_faults (long runs). Each fault is what `spofless drill --random`
does with it, by the same code: the schedule's fault_spec (kill, pause, switchover,
on the primary, a replica or the etcd leader) applied by spofless.drill.faults to the
cluster seen as a drill sees a running stack (ClusterView: its members' roles and
pids). What the stack's supervisor would do is done here: a killed agent or etcd
member is started again (an agent after a new primary is up, or at once for a
replica); every paused process is resumed, also when a wait fails.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
from pg_cluster import Node, PgCluster

from spofless.drill import FaultKind, ScheduledFault
from spofless.drill.faults import apply_fault
from spofless.drill.plans import fault as drill_fault
from spofless.drill.schedule import fault_spec
from spofless.lab import Lab
from spofless.topology import Topology, load_topology

HEAL_BOUND = 45.0  # seconds after a fault is over until every member does its job again
REJOIN_STATES = ("recovering", "rewinding", "re-cloning", "cloning")


@dataclass
class FaultOutcome:
    fault: ScheduledFault
    target: str
    note: str
    healed_in: float  # seconds from the end of the fault to full redundancy


class ClusterView:
    """The test cluster as a drill sees a running stack (faults.Running): `db/i` with its
    role (primary: the writable leader), postmaster pid and agent pid; `etcd/i` with
    its pid, the raft leader's role `leader`."""

    lab: Lab | None = None

    def __init__(self, cluster: PgCluster) -> None:
        assert cluster.etcd is not None
        self.cluster = cluster
        self.etcd = cluster.etcd

    @cached_property
    def running(self) -> Topology:
        return load_topology(self.cluster.file)

    def document(self) -> dict[str, Any]:
        docs: list[dict[str, Any]] = []
        for n in self.cluster.nodes:
            st = n.status() or {}
            role = st.get("role")
            if role == "primary" and not st.get("leader"):
                role = "demoting"
            docs.append(
                {
                    "name": f"db/{n.index}",
                    "component": "db",
                    "host": None,
                    "role": role,
                    "pid": n.postmaster_pid(),
                    "agent_pid": n.agent_pid,
                    "pgid": None,
                }
            )
        leader = self.etcd.leader()
        for i, name in enumerate(self.etcd.names):
            docs.append(
                {
                    "name": f"etcd/{i}",
                    "component": "etcd",
                    "host": None,
                    "role": "leader" if name == leader else None,
                    "pid": self.etcd.processes[name].pid,
                    "pgid": None,
                }
            )
        return {"instances": docs}

    def node(self, instance: str) -> Node:
        return self.cluster.nodes[int(instance.rpartition("/")[2])]

    def etcd_member(self, instance: str) -> str:
        return self.etcd.names[int(instance.rpartition("/")[2])]


class Nemesis:
    def __init__(self, cluster: PgCluster) -> None:
        assert cluster.etcd is not None
        self.cluster = cluster
        self.etcd = cluster.etcd

    # -- full redundancy ---------------------------------------------------------------

    def whole(self) -> bool:
        """One primary; every other member streams from it on its timeline; the primary's
        pg_stat_replication shows them; every member's /health agrees."""
        c = self.cluster
        if not c.healthy():
            return False
        primary = c.primary()
        if primary is None:
            return False
        try:
            rows = primary.query(
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
            )
            lead = primary.status()
        except Exception:
            return False
        names = {r[0] for r in rows}
        if not {n.name for n in c.nodes if n is not primary} <= names:
            return False
        for n in c.nodes:
            st = n.status()
            if st is None or lead is None or st.get("timeline") != lead.get("timeline"):
                return False
            try:
                if httpx.get(f"{n.api}/health", timeout=1.0).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    def wait_whole(self, what: str, bound: float = HEAL_BOUND) -> float:
        start = time.monotonic()
        self.cluster.wait(self.whole, f"full redundancy after {what}", bound)
        return time.monotonic() - start

    # -- faults ---------------------------------------------------------------------------

    def apply(self, fault: ScheduledFault) -> FaultOutcome:
        """The fault as `spofless drill --random` applies it (schedule.fault_spec and
        faults.apply_fault), then what the stack's supervisor would do, then the wait
        for full redundancy."""
        assert self.cluster.primary() is not None, "a fault needs a primary to start from"
        view = ClusterView(self.cluster)
        spec = fault_spec(fault, "db", "etcd")
        applied = apply_fault(spec, view, random.Random(fault.pick))
        note = applied.note
        k = fault.kind
        try:
            if spec.for_:
                time.sleep(spec.for_)
        finally:
            applied.undo()  # SIGCONT of a pause; the end of a switchover
        note = applied.note or note
        (target,) = applied.targets
        if k in (FaultKind.NODE_KILL, FaultKind.REJOIN_KILL):
            self._restart(view.node(target), wait_failover=True)
            if k is FaultKind.REJOIN_KILL:
                note = self._kill_while_rejoining(view, target)
        elif k is FaultKind.REPLICA_KILL:
            self._restart(view.node(target), wait_failover=False)
        elif k is FaultKind.ETCD_LEADER_KILL:
            time.sleep(2.0)
            self.etcd.restart(view.etcd_member(target))
        healed = self.wait_whole(str(fault))
        return FaultOutcome(fault, target, note, healed)

    def _restart(self, node: Node, *, wait_failover: bool) -> None:
        """As the supervisor: once the killed agent is gone (after a new primary, when it
        was the primary), start it again."""
        node.wait_agent_exit()
        if wait_failover:
            self.cluster.wait_new_primary(node, bound=30)
        else:
            time.sleep(1.0)  # the stack runner's restart backoff
        node.start()

    def _kill_while_rejoining(self, view: ClusterView, target: str, bound: float = 30.0) -> str:
        """Kill the member again (the drill's kill of that instance) while its agent
        repairs its data directory."""
        node = view.node(target)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            st = node.status()
            state = st.get("state") if st else None
            if state in REJOIN_STATES:
                apply_fault(drill_fault(at=0, kill=target), view, random.Random(0))
                self._restart(node, wait_failover=False)
                return f"killed while {state}"
            if st is not None and st.get("streaming"):
                return "rejoined before it could be killed (no repair needed)"
            time.sleep(0.02)
        return "never seen repairing"


def caught_up(cluster: PgCluster) -> bool:
    """Every replica has replayed everything the primary wrote."""
    primary = cluster.primary()
    if primary is None:
        return False
    rows = primary.query(
        "SELECT count(*) FILTER (WHERE replay_lsn = pg_current_wal_lsn()) FROM pg_stat_replication"
        " WHERE application_name <> 'spofless_fence'"
    )
    return int(rows[0][0]) == len(cluster.nodes) - 1
