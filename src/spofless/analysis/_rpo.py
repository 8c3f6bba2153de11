"""What a failover can lose, per PostgreSQL component: the recovery point objective
its replication mode gives. Pure; the figures are the modes' guarantees, not measured.

- `synchronous: strict`: RPO 0. A commit is acknowledged only once a synchronous
  standby holds it, and only such a standby may be promoted; with none, commits wait.
- `synchronous: true`: RPO 0 while a synchronous standby streams; while none does,
  the primary degrades and acknowledges alone, and a failover then may lose what it
  acknowledged (spofless records and reports that range).
- asynchronous: bounded by the replication lag at the moment of the failure; a
  replica lagging more than `maximum_lag_on_failover` is never promoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from spofless.topology import PostgresComponent, Topology


@dataclass(frozen=True, slots=True)
class DataLoss:
    component: str
    mode: str  # "synchronous: strict", "synchronous", "asynchronous"
    rpo_zero: bool  # a failover never loses an acknowledged commit
    text: str


def data_loss(topology: Topology) -> tuple[DataLoss, ...]:
    out = []
    for name, comp in topology.components.items():
        if not isinstance(comp, PostgresComponent):
            continue
        if comp.synchronous and comp.strict:
            out.append(
                DataLoss(name, "synchronous: strict", True, "RPO 0: commits wait for a standby")
            )
        elif comp.synchronous:
            out.append(
                DataLoss(
                    name,
                    "synchronous",
                    False,
                    "RPO 0 while a standby streams, else degraded commits can be lost",
                )
            )
        else:
            lag = comp.maximum_lag_on_failover
            out.append(
                DataLoss(
                    name,
                    "asynchronous",
                    False,
                    f"RPO = replication lag at the failure (at most {lag} bytes)",
                )
            )
    return tuple(out)
