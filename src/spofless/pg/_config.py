"""What spofless writes into a data directory's configuration: pure.

`pg_hba.conf` from the topology (with authentication on): the agent's own
connections over a Unix socket with peer authentication (the OS user mapped to
`postgres` in pg_ident.conf); replication (`replicator`), pg_rewind (`rewinder`)
and the agents' queries (`postgres`) from the other members' hosts; every user
from the hosts of the components that need the database; scram-sha-256 for every
network connection, over TLS (`hostssl`) when it is on; nothing else.
"""

from __future__ import annotations

import ipaddress

from spofless.pg._server_model import (
    REPLICATION_USER,
    REWIND_USER,
    SUPERUSER,
    PgAuth,
    ServerSettings,
    Upstream,
    slot_name,
)

# Files the agent copies into the data directory (owned by the OS user, 0600).
SERVER_CERT, SERVER_KEY, CA_CERT = "spofless-server.crt", "spofless-server.key", "spofless-ca.crt"
TRUST_HBA = """\
# Managed by spofless: rewritten before every start.
local   all          all                    trust
host    all          all          127.0.0.1/32  trust
host    replication  all          127.0.0.1/32  trust
host    all          all          ::1/128       trust
host    replication  all          ::1/128       trust
"""
IDENT_MAP = "spofless"


def managed_conf(
    s: ServerSettings, upstream: Upstream | None, sync_names: str
) -> dict[str, str | int | bool]:
    """The settings spofless writes to `spofless.conf` before every start and change."""
    auth = s.auth
    listen = s.host if s.host in ("127.0.0.1", "localhost") else f"{s.host},127.0.0.1"
    conf: dict[str, str | int | bool] = {
        "listen_addresses": listen,
        "port": s.port,
        # The agent's own socket (peer authentication); none without authentication (no
        # clash on /var/run/postgresql).
        "unix_socket_directories": str(auth.socket_dir) if auth else "",
        "cluster_name": s.name,
        "wal_level": "replica",
        "hot_standby": True,
        "hot_standby_feedback": True,
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_log_hints": True,  # pg_rewind needs it (or data checksums)
        "wal_keep_size": "256MB",
        "recovery_target_timeline": "latest",
        # A replica retries its upstream every 5 s by default: too slow for a failover.
        "wal_retrieve_retry_interval": "200ms",
        "wal_receiver_status_interval": "1s",
        "synchronous_commit": "on",
        "synchronous_standby_names": sync_names,
        "primary_conninfo": (
            upstream.conninfo(s.name, user=REPLICATION_USER if auth else SUPERUSER, auth=auth)
            if upstream
            else ""
        ),
        "primary_slot_name": (upstream.slot or slot_name(s.name)) if upstream else "",
        "log_line_prefix": f"%m [%p] {s.name} ",
    }
    if auth is not None:
        conf["password_encryption"] = "scram-sha-256"
        if auth.tls is not None:
            conf.update(
                ssl=True,
                ssl_cert_file=SERVER_CERT,
                ssl_key_file=SERVER_KEY,
                ssl_ca_file=CA_CERT,
                ssl_min_protocol_version="TLSv1.2",
            )
    conf.update(s.parameters)
    return conf


def _cidr(address: str) -> str:
    """An address as a pg_hba network: 10.0.0.5 -> 10.0.0.5/32; networks stay."""
    net = ipaddress.ip_network(address, strict=False)
    return str(net)


def hba_text(s: ServerSettings) -> str:
    """pg_hba.conf for `s` (see the module docstring)."""
    auth = s.auth
    if auth is None:
        return TRUST_HBA
    host = "hostssl" if auth.tls is not None else "host"
    lines = [
        "# Managed by spofless from the topology: rewritten before every start.",
        f"local   all          {SUPERUSER}   peer map={IDENT_MAP}",
        f"local   replication  {SUPERUSER}   peer map={IDENT_MAP}",
    ]
    me = sorted({_cidr(s.host), "127.0.0.1/32"})
    peers = sorted({_cidr(p) for p in auth.peers} - set(me)) + me
    for net in peers:
        lines.append(f"{host} replication  {REPLICATION_USER}  {net}  scram-sha-256")
        lines.append(f"{host} all          {REWIND_USER}  {net}  scram-sha-256")
        lines.append(f"{host} all          {SUPERUSER}  {net}  scram-sha-256")
    for net in sorted({_cidr(c) for c in auth.clients}):
        lines.append(f"{host} all          all  {net}  scram-sha-256")
    return "\n".join(lines) + "\n"


def ident_text(os_users: list[str]) -> str:
    """pg_ident.conf: the OS users the agent runs as may connect as `postgres`."""
    lines = ["# Managed by spofless: rewritten before every start."]
    lines += [f"{IDENT_MAP}  {u}  {SUPERUSER}" for u in sorted(set(os_users))]
    return "\n".join(lines) + "\n"


def passfile_text(auth: PgAuth) -> str:
    """The .pgpass of the tools and the WAL receiver: each user's password, any server."""

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(":", "\\:")

    rows = [
        (SUPERUSER, auth.superuser_password.get_secret_value()),
        (REPLICATION_USER, auth.replication_password.get_secret_value()),
        (REWIND_USER, auth.rewind_password.get_secret_value()),
    ]
    return "".join(f"*:*:*:{u}:{esc(p)}\n" for u, p in rows)
