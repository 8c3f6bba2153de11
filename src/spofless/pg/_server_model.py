"""What the PostgreSQL adapter works with: its settings, upstreams, status rows, slot names."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from spofless.pg.view import Role

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewinder"


class PgTls(BaseModel):
    """The server's certificate and key, and the CA its peers' certificates chain to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert: Path
    key: Path
    ca: Path


class PgAuth(BaseModel):
    """Who may connect, and with what. Without it (the library's default) the server
    trusts loopback connections only: tests of the adapter alone, never the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    superuser_password: SecretStr
    replication_password: SecretStr
    rewind_password: SecretStr
    # Other members' host addresses: replication, pg_rewind and the agents' queries.
    peers: tuple[str, ...] = ()
    # Addresses or networks (CIDR) of the hosts of the components that need this one.
    clients: tuple[str, ...] = ()
    socket_dir: Path  # the agent's own connections: a Unix socket, peer authentication
    passfile: Path  # the .pgpass the tools and the WAL receiver read (0600, the OS user)
    tls: PgTls | None = None

    @property
    def client_ca(self) -> Path:
        """The CA certificate as the OS user can read it (copied beside the passfile):
        the tools and the WAL receiver verify their upstream's certificate with it."""
        return self.passfile.with_suffix(".ca.crt")


class ServerSettings(BaseModel):
    """One PostgreSQL instance as the agent runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=50)]
    data_dir: Path
    port: Annotated[int, Field(ge=1, le=65535)]
    host: str = "127.0.0.1"
    # None: the current user, or `postgres` when the agent runs as root.
    os_user: str | None = None
    bin_dir: Path | None = None  # None: the newest /usr/lib/postgresql/<ver>/bin, >= 15
    log_file: Path | None = None  # None: <data_dir>.log beside the data directory
    # Bounds of every wait. Crash recovery after a kill can take a while on a busy server.
    start_timeout: Annotated[float, Field(gt=0)] = 60.0
    stop_timeout: Annotated[float, Field(gt=0)] = 30.0
    query_timeout: Annotated[float, Field(gt=0)] = 2.0
    tool_timeout: Annotated[float, Field(gt=0)] = 600.0  # initdb, pg_basebackup, pg_rewind
    parameters: Mapping[str, str | int | bool] = Field(default_factory=dict)  # extra GUCs
    auth: PgAuth | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """A server to replicate, clone or rewind from.

    Or a route to whichever of several servers accepts writes (`read_write`): `host` and
    `port` then list them, comma-separated, as libpq takes them, and libpq connects to
    the first that is read-write (`target_session_attrs=read-write`). A standby
    cluster's leader follows its primary cluster through such a route."""

    name: str
    host: str
    port: int | str
    read_write: bool = False
    # The replication slot to stream through on it; None: the member's own (slot_name).
    slot: str | None = None

    @classmethod
    def route(cls, name: str, addresses: Sequence[tuple[str, int]], slot: str) -> Upstream:
        """The read-write route over `addresses` (host, port), streaming through `slot`."""
        return cls(
            name,
            ",".join(h for h, _ in addresses),
            ",".join(str(p) for _, p in addresses),
            read_write=True,
            slot=slot,
        )

    def conninfo(
        self,
        application_name: str,
        dbname: str | None = None,
        *,
        user: str = SUPERUSER,
        auth: PgAuth | None = None,
    ) -> str:
        """A libpq connection string to this server as `user`: the password from the
        passfile and, with TLS, the server's certificate verified against the CA."""
        parts = [
            f"host={self.host}",
            f"port={self.port}",
            f"user={user}",
            f"application_name={application_name}",
            "connect_timeout=2",
        ]
        if self.read_write:
            parts.append("target_session_attrs=read-write")
        if dbname:
            parts.append(f"dbname={dbname}")
        if auth is not None:
            parts.append(f"passfile={auth.passfile}")
            if auth.tls is not None:
                parts += ["sslmode=verify-full", f"sslrootcert={auth.client_ca}"]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class ReplicationRow:
    """One row of the primary's pg_stat_replication."""

    name: str  # application_name: the member's name
    state: str  # streaming, catchup, ...
    sync_state: str  # sync, async, potential, quorum
    flush_lsn: int | None
    replay_lsn: int | None
    lag: int | None  # bytes between the primary's current position and replay_lsn


@dataclass(frozen=True, slots=True)
class PgStatus:
    """A running server's state, read in one round trip."""

    role: Role
    timeline: int | None
    wal_position: int | None  # primary: current; replica: max(received, replayed)
    received_lsn: int | None = None
    replayed_lsn: int | None = None
    receiver_status: str | None = None  # "streaming" when a replica streams
    # A replica's minimum recovery point and its timeline (None when unset).
    recovery_timeline: int | None = None
    recovery_lsn: int | None = None
    segment_size: int = 0  # wal_segment_size, bytes
    replication: tuple[ReplicationRow, ...] = ()


def slot_name(member: str) -> str:
    """The physical replication slot a member streams through."""
    return "spofless_" + re.sub(r"[^a-z0-9_]", "_", member.lower())


STANDBY_SLOT_PREFIX = "spofless_standby_"


def standby_slot(cluster: str) -> str:
    """The slot on a primary cluster's leader that standby cluster `cluster`'s leader
    streams through (one per standby cluster, whichever member leads it)."""
    return STANDBY_SLOT_PREFIX + re.sub(r"[^a-z0-9_]", "_", cluster.lower())
