"""What a failover can lose, per PostgreSQL component: the recovery point objective
its replication mode gives. Pure; the figures are the modes' guarantees, not measured.
And `recovery`: per entry component, the disaster-recovery tier and the RTO and RPO
its design can meet, against the topology's declared `objectives` (measured restore
drills are an input, read by the caller).

- `synchronous: strict`: RPO 0. A commit is acknowledged only once a synchronous
  standby holds it, and only such a standby may be promoted; with none, commits wait.
- `synchronous: true`: RPO 0 while a synchronous standby streams; while none does,
  the primary degrades and acknowledges alone, and a failover then may lose what it
  acknowledged (spofless records and reports that range).
- asynchronous: bounded by the replication lag at the moment of the failure; a
  replica lagging more than `maximum_lag_on_failover` is never promoted.
- a standby cluster (`standby_of`, in another region): a disaster-recovery copy, not a
  replica set that fails over by itself. Losing the primary cluster's region, writes
  resume only once an operator runs `spofless pg promote-region` (warm standby); what
  the primary acknowledged and the standby had not received (the cross-region
  replication lag, asynchronous) is lost. Planned, nothing is lost: the old primary
  cluster is fenced and the standby catches up first. The primary cluster's region
  stays a single point of failure of the analysis: its recovery is manual.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from spofless.topology import Location, PostgresComponent, Topology


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
        if comp.standby_of is not None:
            out.append(
                DataLoss(
                    name,
                    f"standby cluster of {comp.standby_of}",
                    False,
                    f"promote-region after losing {comp.standby_of}'s region loses the "
                    "cross-region replication lag (asynchronous); planned, nothing is lost",
                )
            )
        elif comp.synchronous and comp.strict:
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


# -- recovery objectives per entry component ------------------------------------------

TIERS = ("none", "backup/restore", "pilot light", "warm standby", "hot standby")


@dataclass(frozen=True, slots=True)
class Measured:
    """A component's newest restore drill (`spofless backup drill`): input, not analysis."""

    restore_seconds: float  # the drill's RTO: fetch, restore, replay, first query
    rpo_seconds: float | None  # the drill's RPO; None when it replayed no commit
    at: float  # when it ran (epoch)


@dataclass(frozen=True, slots=True)
class Unmet:
    objective: str  # "rto" or "rpo"
    declared: float  # seconds
    why: str
    fix: str
    location: Location | None = None  # where the objective is declared


@dataclass(frozen=True, slots=True)
class Recovery:
    """What the design of one entry component can recover to, and how fast."""

    component: str  # the entry component
    data: str  # the postgres component holding its data
    tier: str  # one of TIERS
    rpo: str  # a sentence: what the design can meet
    rto: str
    rpo_seconds: float | None  # the bound the design gives; None: none known
    rto_seconds: float | None
    unmet: tuple[Unmet, ...]  # declared objectives it cannot meet, each with a fix
    # Losing the data's whole region: its standby clusters (None: nothing to recover to).
    region_loss: str | None = None


def _objectives(topology: Topology, entry: str) -> tuple[float | None, float | None]:
    from spofless.topology._schema import Objectives

    raw = topology.data.get("objectives")
    if not raw:
        return None, None
    o = Objectives.model_validate(raw).of(entry)
    return o.rto, o.rpo


def _secs(value: float) -> str:
    return f"{value:g} s"


def recovery(
    topology: Topology, measured: Mapping[str, Measured] | None = None
) -> tuple[Recovery, ...]:
    """For each entry component that holds data in a postgres component (itself or one it
    needs): the disaster-recovery tier, the RPO and RTO the design can meet, and which
    declared `objectives` it cannot meet, with a fix.

    - several members with automatic failover: RTO about the lease's ttl + loop_wait;
      RPO 0 with synchronous replication (`hot standby`; guaranteed only with `strict`),
      the replication lag without (`warm standby`);
    - one member with `backup:`: RTO the measured restore time of the newest drill,
      RPO the WAL not archived yet, a drill's measured RPO (`backup/restore`);
    - one member without backups: neither is bounded (`none`).
    `pilot light` (replicated data, idle servers) is not a design spofless runs.
    """
    measured = measured or {}
    out = []
    for entry in topology.entry:
        want_rto, want_rpo = _objectives(topology, entry)
        stores = [
            n
            for n in topology.dependency_order([entry])
            if isinstance(topology.components[n], PostgresComponent)
        ]
        for name in stores:
            comp = topology.components[name]
            assert isinstance(comp, PostgresComponent)
            r = _recovery(entry, name, comp, measured.get(name), want_rto, want_rpo)
            unmet = tuple(
                dataclasses.replace(u, location=_declared_at(topology, entry, u.objective))
                for u in r.unmet
            )
            region = _region_loss(topology, name)
            out.append(dataclasses.replace(r, unmet=unmet, region_loss=region))
    return tuple(out)


def _region_loss(topology: Topology, name: str) -> str | None:
    """What losing `name`'s region leaves: its standby clusters, promoted by hand."""
    standbys = topology.cluster_group(name)[1:]
    if not standbys or topology.cluster_group(name)[0] != name:
        return None

    def region(c: str) -> str:
        hosts = {i.host for i in topology.instances[c]}
        found = {topology.hosts[h].region for h in hosts if h is not None}
        return ", ".join(sorted(r for r in found if r)) or "no region given"

    where = "; ".join(f"{s} (region {region(s)})" for s in standbys)
    autos = [
        a
        for s in standbys
        if isinstance(c := topology.components[s], PostgresComponent)
        and (a := c.auto_promote) is not None
    ]
    if autos:
        auto = autos[0]
        return (
            f"warm standby, automatic: standby cluster {where}, promoted by itself once a "
            f"majority of the quorum {auto.quorum} agrees the region is gone (auto_promote: "
            f"about the region lease's ttl, {auto.ttl} s); RPO the cross-region replication "
            "lag plus what a cut-off primary acknowledged before it stopped (up to two thirds "
            "of the ttl), 0 when planned"
        )
    return (
        f"warm standby: standby cluster {where}, promoted by hand (`spofless pg "
        "promote-region FILE --region R`, seconds once run); RPO the cross-region "
        "replication lag (asynchronous), 0 when planned"
    )


def _declared_at(topology: Topology, entry: str, objective: str) -> Location | None:
    own = ("objectives", "entry", entry, objective)
    if own in topology.locations:
        return topology.locations[own]
    return topology.location_of("objectives", objective)


def _recovery(
    entry: str,
    name: str,
    comp: PostgresComponent,
    drill: Measured | None,
    want_rto: float | None,
    want_rpo: float | None,
) -> Recovery:
    unmet: list[Unmet] = []
    failover = comp.instance_count >= 2
    restore_note = (
        f"restore measured at {_secs(round(drill.restore_seconds, 1))} by the last drill"
        if drill
        else "restore time unknown: run `spofless backup drill FILE`"
    )
    if failover:
        tier = "hot standby" if comp.synchronous else "warm standby"
        takeover = comp.ttl + comp.loop_wait
        rto_s: float | None = takeover
        rto = f"about {_secs(takeover)}: automatic failover (lease ttl {comp.ttl} s + loop_wait)"
        if comp.backup is None:
            rto += "; losing every member: not recoverable (no backup:)"
        else:
            rto += f"; losing every member: a restore ({restore_note})"
        if comp.synchronous and comp.strict:
            rpo_s: float | None = 0.0
            rpo = "0: a commit is acknowledged once a synchronous standby holds it"
        elif comp.synchronous:
            rpo_s = None  # no bound guaranteed: a degraded primary acknowledges alone
            rpo = "0 while a synchronous standby streams; a degraded primary's commits can be lost"
        else:
            rpo_s = None
            rpo = (
                "the replication lag at the failure (at most "
                f"{comp.maximum_lag_on_failover} bytes behind is promoted)"
            )
    elif comp.backup is not None:
        tier = "backup/restore"
        rto_s = drill.restore_seconds if drill else None
        rto = f"a restore from backup: {restore_note}"
        rpo_s = drill.rpo_seconds if drill else None
        rpo = "the WAL not archived yet (up to one 16 MB segment: PostgreSQL archives full ones)"
        if drill and drill.rpo_seconds is not None:
            rpo += f"; measured {_secs(round(drill.rpo_seconds, 1))} by the last drill"
    else:
        tier, rto_s, rpo_s = "none", None, None
        rto = "unbounded: one member and no backup (rebuilt by hand)"
        rpo = "unbounded: the member's disk holds the only copy"

    if want_rpo is not None and not (rpo_s is not None and rpo_s <= want_rpo):
        if failover and comp.synchronous and not comp.strict:
            why = "a primary without a streaming standby degrades and acknowledges alone"
            fix = f"{name}: synchronous: strict (commits wait instead of degrading)"
        elif failover and not comp.synchronous:
            why = "asynchronous replication loses the lag at a failover"
            fix = f"{name}: synchronous: strict (or true) so commits reach a standby first"
        elif comp.backup is not None:
            why = "backups lose the unarchived WAL, and no drill measured it"
            if rpo_s is not None:
                why = f"backups lose the unarchived WAL; the last drill measured {_secs(rpo_s)}"
            fix = f"{name}: a second instance with synchronous: strict (a hot standby)"
        else:
            why = "one member without backups: its disk holds the only copy"
            fix = f"{name}: add backup: and a second instance with synchronous replication"
        unmet.append(Unmet("rpo", want_rpo, why, fix))
    if want_rto is not None and not (rto_s is not None and rto_s <= want_rto):
        if failover and rto_s is not None:
            why = f"a failover takes about {_secs(rto_s)}"
            fix = f"{name}: a shorter ttl (and loop_wait at most half of it)"
        elif comp.backup is not None:
            why = (
                f"a restore took {_secs(round(rto_s, 1))} at the last drill"
                if rto_s is not None
                else "no drill measured how long a restore takes"
            )
            fix = (
                f"{name}: a second instance (a standby fails over in about "
                f"{_secs(comp.ttl + comp.loop_wait)})"
                + ("" if drill else "; and run `spofless backup drill FILE` to measure")
            )
        else:
            why = "one member without backups cannot be recovered"
            fix = f"{name}: a second instance and backup:"
        unmet.append(Unmet("rto", want_rto, why, fix))
    return Recovery(entry, name, tier, rpo, rto, rpo_s, rto_s, tuple(unmet))
