"""What spofless writes into a data directory's configuration: pure."""

from __future__ import annotations

from spofless.pg._server_model import ServerSettings, Upstream, slot_name


def managed_conf(
    s: ServerSettings, upstream: Upstream | None, sync_names: str
) -> dict[str, str | int | bool]:
    """The settings spofless writes to `spofless.conf` before every start and change."""
    conf: dict[str, str | int | bool] = {
        "listen_addresses": s.host,
        "port": s.port,
        "unix_socket_directories": "",  # TCP only: no clash on /var/run/postgresql
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
        "primary_conninfo": upstream.conninfo(s.name) if upstream else "",
        "primary_slot_name": slot_name(s.name) if upstream else "",
        "log_line_prefix": f"%m [%p] {s.name} ",
    }
    conf.update(s.parameters)
    return conf
