"""Applies the drill library's scheduled faults to a PgCluster, for real, and checks
that the cluster heals back to full redundancy after each one.

Used by tests/integration/test_pg_random_faults.py (short runs) and
benchmarks/pg_random_faults (long runs): one implementation. A killed agent is
started again as the stack runner would (after a new primary is up, or at once
for a replica); every paused process is resumed, also when a wait fails.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pg_cluster import Node, PgCluster

from spofless.drill import FaultKind, ScheduledFault

HEAL_BOUND = 45.0  # seconds after a fault is over until every member does its job again
REJOIN_STATES = ("recovering", "rewinding", "re-cloning", "cloning")


@dataclass
class FaultOutcome:
    fault: ScheduledFault
    target: str
    note: str
    healed_in: float  # seconds from the end of the fault to full redundancy


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
        c = self.cluster
        primary = c.primary()
        assert primary is not None, "a fault needs a primary to start from"
        replicas = [n for n in c.nodes if n is not primary]
        replica = replicas[fault.pick % len(replicas)]
        k = fault.kind
        target, note = primary.name, ""
        if k is FaultKind.NODE_KILL:
            self._kill_and_restart(primary, wait_failover=True)
        elif k is FaultKind.POSTMASTER_KILL:
            primary.signal_postgres(signal.SIGKILL)
        elif k is FaultKind.NODE_PAUSE:
            pm = primary.postmaster_pid()
            assert pm is not None
            primary.stop_node()
            try:
                time.sleep(fault.pause_for)
            finally:
                primary.cont_node(pm)
        elif k is FaultKind.AGENT_PAUSE:
            primary.signal_agent(signal.SIGSTOP)
            try:
                time.sleep(fault.pause_for)
            finally:
                primary.signal_agent(signal.SIGCONT)
        elif k is FaultKind.REPLICA_KILL:
            target = replica.name
            self._kill_and_restart(replica, wait_failover=False)
        elif k is FaultKind.REJOIN_KILL:
            self._kill_and_restart(primary, wait_failover=True)
            note = self._kill_while_rejoining(primary)
        elif k in (FaultKind.ETCD_LEADER_KILL, FaultKind.ETCD_LEADER_PAUSE):
            target = self.etcd.leader()
            if k is FaultKind.ETCD_LEADER_KILL:
                self.etcd.kill(target)
                time.sleep(2.0)
                self.etcd.restart(target)
            else:
                self.etcd.pause(target)
                try:
                    time.sleep(fault.pause_for)
                finally:
                    self.etcd.resume(target)
        elif k is FaultKind.SWITCHOVER:
            note = self._switchover()
        healed = self.wait_whole(str(fault))
        return FaultOutcome(fault, target, note, healed)

    def _kill_and_restart(self, node: Node, *, wait_failover: bool) -> None:
        node.kill_node()
        node.wait_agent_exit()
        if wait_failover:
            self.cluster.wait_new_primary(node, bound=30)
        else:
            time.sleep(1.0)  # the stack runner's restart backoff
        node.start()

    def _kill_while_rejoining(self, node: Node, bound: float = 30.0) -> str:
        """Kill the member again while its agent repairs its data directory."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            st = node.status()
            state = st.get("state") if st else None
            if state in REJOIN_STATES:
                node.kill_node()
                node.wait_agent_exit()
                node.start()
                return f"killed while {state}"
            if st is not None and st.get("streaming"):
                return "rejoined before it could be killed (no repair needed)"
            time.sleep(0.02)
        return "never seen repairing"

    def _switchover(self) -> str:
        spofless = Path(sys.executable).with_name("spofless")
        out = subprocess.run(
            [str(spofless), "pg", "switchover", str(self.cluster.file), "--wait", "30"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return (
            (out.stdout or out.stderr).strip().splitlines()[-1] if out.stdout or out.stderr else ""
        )


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
