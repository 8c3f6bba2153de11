"""The frozen snapshot one agent loop decides on, and the decision it returns.

Plain data only: the agent fills a `View` from etcd and its local PostgreSQL,
`spofless.pg.decide.decide` reads it and returns a `Decision`. WAL positions
are byte offsets (an LSN `X/Y` is `X << 32 | Y`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from spofless.pg._region import RegionView


class Role(StrEnum):
    PRIMARY = "primary"  # running and writable (not in recovery)
    REPLICA = "replica"  # running in recovery (standby)


class Action(StrEnum):
    """What the agent does in one loop; long ones run as one cancellable task."""

    BOOTSTRAP = "bootstrap"  # initdb a new cluster, then start it as primary
    CLONE = "clone"  # pg_basebackup from `target` (the leader), then start as replica
    START_PRIMARY = "start_primary"  # start the local data directory as the writable leader
    START_REPLICA = "start_replica"  # start as a standby following `target` (None: no upstream)
    PROMOTE = "promote"  # promote the running standby: I hold the lease
    DEMOTE = "demote"  # stop accepting writes now (immediate stop), rejoin as a replica later
    RENEW = "renew"  # the healthy leader's loop: publish state, manage synchronous standbys
    FOLLOW = "follow"  # point the running standby at `target`
    SWITCHOVER = "switchover"  # hand the leadership to `target`: stop, let it catch up, resign
    REWIND = "rewind"  # pg_rewind from `target`, then start as its replica
    RECLONE = "reclone"  # keep the diverged data directory aside and clone from `target`
    RECOVER = "recover"  # crash recovery in single-user mode: find where a crashed WAL ends
    # The cluster became a standby cluster while I am its primary: stop writes (a fast
    # shutdown: connected standbys receive everything), keep the lease, record where my
    # WAL ends (P/demoted), then rejoin as the standby leader.
    STEP_DOWN = "step_down"
    ACQUIRE = "acquire"  # race for the leader lease (compare-and-swap create)
    RELEASE = "release"  # give the leader lease up so a healthy member can take it
    WAIT = "wait"  # something is missing; the reason says what
    NOTHING = "nothing"  # all is as it should be


@dataclass(frozen=True, slots=True)
class Decision:
    """One loop's decision and the one human sentence that explains it."""

    action: Action
    reason: str
    target: str | None = None  # the member to clone, follow or rewind from
    # The member cannot leave this state by itself (status shows it as `failed`).
    failed: bool = False

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class TimelineSwitch:
    """One line of a timeline history: `timeline` ended at `lsn` (the next one began)."""

    timeline: int
    lsn: int


@dataclass(frozen=True, slots=True)
class TimelineHistory:
    """The leader's timeline and the switch points of its ancestors (its history file)."""

    timeline: int
    switches: tuple[TimelineSwitch, ...] = ()


@dataclass(frozen=True, slots=True)
class DegradedRange:
    """WAL a primary wrote while synchronous mode was degraded: commits in it may have
    been acknowledged with no synchronous standby holding them. `end` None: still open."""

    timeline: int
    leader: str
    start: int
    end: int | None = None


@dataclass(frozen=True, slots=True)
class LostRange:
    """WAL of a degraded term that a newly promoted member does not hold: commits in
    it may have been acknowledged, and are not in the new timeline. `end` is the old
    leader's last published position; it may have acknowledged beyond (`open`)."""

    timeline: int
    start: int
    end: int
    open: bool

    def __str__(self) -> str:
        more = " or beyond" if self.open else ""
        return f"{format_lsn(self.start)}-{format_lsn(self.end)}{more} on timeline {self.timeline}"


@dataclass(frozen=True, slots=True)
class DiskPosition:
    """How far a stopped data directory's WAL goes, from its control file (see
    spofless.pg.rejoin). `position` None: a primary that crashed, whose WAL may run
    past its last checkpoint: known only after crash recovery."""

    state: str  # pg_controldata's "Database cluster state"
    timeline: int | None
    position: int | None
    shutdown_checkpoint: bool = False  # `position` is a clean shutdown's checkpoint


@dataclass(frozen=True, slots=True)
class LocalState:
    """This member's PostgreSQL as the adapter found it."""

    has_data: bool  # the data directory holds an initialized cluster
    # False: this member joins a cluster restored on another member's machine (the
    # `<data dir>.clone-only` mark of `spofless restore --as-cluster --host`): it clones
    # from that primary, never bootstraps an empty cluster of its own.
    may_bootstrap: bool = True
    running: bool = False
    role: Role | None = None  # None when not running
    timeline: int | None = None
    # Primary: pg_current_wal_lsn(); replica: max(received, replayed); stopped: from pg_control.
    wal_position: int | None = None
    following: str | None = None  # the member primary_conninfo points at
    streaming: bool = False  # a replica's WAL receiver is streaming
    # Seconds a running replica has not been streaming from its leader (0 when streaming).
    not_streaming_for: float = 0.0
    # The data directory was last a primary (not in recovery, no standby.signal): it may
    # hold writes the new leader never saw, so it rejoins through pg_rewind only.
    was_primary: bool = False
    rewind_failed: bool = False  # the last pg_rewind of this data directory failed
    start_failures: int = 0  # consecutive failed starts as primary
    system_id: str | None = None  # pg_controldata's database system identifier
    # Consecutive failed starts as a replica: a data directory that cannot follow the
    # leader as it is (e.g. it diverged) is rejoined through pg_rewind instead.
    replica_start_failures: int = 0
    disk: DiskPosition | None = None  # a stopped data directory's position
    # Where a running replica's replay is, and on which timeline: past the leader's
    # switch point of that timeline it cannot follow.
    recovery_timeline: int | None = None
    recovery_position: int | None = None
    rewinding: bool = False  # a pg_rewind was interrupted: it must be finished first
    # Seconds a running PostgreSQL has not answered its agent (0 when it answers).
    unanswered_for: float = 0.0
    # Why a re-clone is impossible now (old copies at their bound, disk space), or None.
    reclone_blocked: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """My hold on the leader lease, as the election reports it."""

    held: bool = False
    token: int | None = None  # fencing token: the leader key's creation revision
    valid_for: float = 0.0  # seconds until the election reports the lease lost


@dataclass(frozen=True, slots=True)
class LeaderKey:
    """The leader key's value: who leads, under which fencing token."""

    name: str
    token: int


@dataclass(frozen=True, slots=True)
class Member:
    """A member's published state (or freshly polled over its HTTP API)."""

    name: str
    role: Role | None = None
    running: bool = False
    timeline: int | None = None
    wal_position: int | None = None
    # False when the member's state is stale or its API did not answer in time: such a
    # member is neither a failover candidate nor a reason for others to stand aside.
    reachable: bool = True


@dataclass(frozen=True, slots=True)
class SyncState:
    """The leader's record of which replicas hold every acknowledged commit.

    Only `members` may be promoted in synchronous mode. `pending` is the replica
    being made synchronous: it joins `members` once it is PostgreSQL's synchronous
    standby and has flushed past `pending_lsn` (see spofless.pg.sync).
    """

    leader: str | None = None
    members: frozenset[str] = frozenset()
    pending: str | None = None
    pending_lsn: int | None = None


@dataclass(frozen=True, slots=True)
class Switchover:
    """An operator's request to move the leadership (`spofless pg switchover|failover`).

    `leader` None: a failover, honoured whoever leads (or when no one does). `candidate`
    None: the leader picks the best eligible replica and writes its name here before it
    stops, so that only that replica takes the lease.
    """

    leader: str | None = None
    candidate: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What etcd says about the cluster (None in the view when etcd is unreachable)."""

    initialized: bool = False  # a cluster was bootstrapped under this prefix
    leader: LeaderKey | None = None
    members: Mapping[str, Member] = field(default_factory=dict)
    sync: SyncState = SyncState()
    # The last WAL position the leader published: the yardstick of maximum_lag_on_failover.
    leader_wal_position: int | None = None
    paused: bool = False  # maintenance: no automatic failover
    switchover: Switchover | None = None
    # The bootstrapped cluster's system identifier (None while it is being bootstrapped).
    system_id: str | None = None
    history: TimelineHistory | None = None  # the leader's, as it published it
    degraded: tuple[DegradedRange, ...] = ()  # recorded by the leaders, newest last
    # What members promoted after a degraded term did not hold (newest last).
    lost: tuple[LostRange, ...] = ()
    # Members an operator allowed to discard divergent WAL (`spofless pg rejoin --discard`).
    discard: frozenset[str] = frozenset()
    # A standby cluster: the cluster (postgres component) it copies, through that
    # cluster's read-write member; None: this is the primary cluster (P/standby, else the
    # topology's `standby_of`).
    standby_of: str | None = None
    # Which `spofless pg promote-region` set standby_of (0: the topology's): the primary
    # cluster with the highest epoch wins when two say they are (spofless.pg._remote).
    standby_epoch: int = 0


@dataclass(frozen=True, slots=True)
class RemotePrimary:
    """A standby cluster's view of the primary cluster it follows, probed over its
    read-write route: whether a read-write member answered, and its timeline and WAL."""

    reachable: bool
    timeline: int | None = None
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The cluster's failover settings that decide() needs (see spofless.pg settings)."""

    synchronous: bool = False
    strict: bool = False  # synchronous: refuse writes rather than degrade to asynchronous
    maximum_lag_on_failover: int = 1024 * 1024  # bytes, as Patroni
    allow_reclone: bool = False  # may remove a diverged data directory that pg_rewind failed on
    max_start_failures: int = 3  # a leader that fails this often to start gives the lease up
    rewind_after: float = 10.0  # seconds a replica may fail to stream before it is rewound
    # A leader whose running PostgreSQL has not answered it this long gives the lease up.
    unanswered_bound: float = 1.0


@dataclass(frozen=True, slots=True)
class View:
    """The frozen snapshot of one agent loop."""

    name: str
    local: LocalState
    lease: Lease
    cluster: ClusterState | None  # None: etcd unreachable
    policy: Policy = Policy()
    now: float = 0.0
    # In a standby cluster: the last probe of the primary cluster (None: none recent).
    remote: RemotePrimary | None = None
    # The group's region lease (spofless.pg._region); None: no auto_promote in the group.
    region: RegionView | None = None


def format_lsn(pos: int | None) -> str:
    """A WAL byte position as PostgreSQL writes it (`0/3000148`); `?` when unknown."""
    if pos is None:
        return "?"
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """PostgreSQL's `X/Y` LSN as a byte position."""
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def optional_lsn(text: str | None) -> int | None:
    """`parse_lsn` of a value that may be missing (NULL, empty, or not an LSN)."""
    return parse_lsn(text) if text and "/" in text else None
