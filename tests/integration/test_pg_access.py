"""Who may connect to the cluster's PostgreSQL, for real: scram-sha-256 over TLS from the
hosts the topology names, nothing else (pg_hba.conf is made from the topology)."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator

import psycopg
import pytest
from pg_cluster import PgCluster, start_cluster

from spofless.security import ca_file
from spofless.topology import load_topology

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with start_cluster(synchronous=False) as c:
        yield c


def _refused(conninfo: str) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(conninfo, autocommit=True).close()
    return str(info.value)


def test_a_client_with_the_password_over_tls_connects(cluster: PgCluster) -> None:
    primary = cluster.wait_healthy()
    assert primary.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]
    method = primary.query("SELECT auth_method FROM pg_hba_file_rules WHERE auth_method <> ''")
    assert {m for (m,) in method} <= {"peer", "scram-sha-256"}  # no trust anywhere


def test_without_or_with_a_wrong_password_or_without_tls_it_is_refused(
    cluster: PgCluster,
) -> None:
    node = cluster.wait_healthy()
    ca = ca_file(load_topology(cluster.file))
    base = f"host=127.0.0.1 port={node.pg_port} user=postgres dbname=postgres connect_timeout=3"
    tls = f"sslmode=verify-full sslrootcert={ca}"
    no_password = _refused(f"{base} {tls} password=")
    assert "password" in no_password
    wrong = _refused(f"{base} {tls} password=not-the-password")
    assert 'password authentication failed for user "postgres"' in wrong
    plain = node.auth_params()["password"]
    no_tls = _refused(f"{base} sslmode=disable password={plain}")
    assert "no pg_hba.conf entry" in no_tls and "no encryption" in no_tls


def test_a_host_the_topology_does_not_name_is_refused(cluster: PgCluster) -> None:
    """From 127.0.0.9 (no host of the topology), over TLS, with the right password."""
    node = cluster.wait_healthy()
    ca = ca_file(load_topology(cluster.file))
    message = _startup_from("127.0.0.9", "127.0.0.1", node.pg_port, str(ca))
    assert 'no pg_hba.conf entry for host "127.0.0.9"' in message, message


def _startup_from(source: str, host: str, port: int, ca: str) -> str:
    """Open a TLS connection from `source` and send a startup message; the server's error."""
    raw = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
    try:
        raw.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context(cafile=ca)
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            params = b"user\0postgres\0database\0postgres\0\0"
            body = struct.pack("!i", 196608) + params
            tls.sendall(struct.pack("!i", len(body) + 4) + body)
            kind = tls.recv(1)
            (length,) = struct.unpack("!i", tls.recv(4))
            payload = b""
            while len(payload) < length - 4:
                payload += tls.recv(length - 4 - len(payload))
    finally:
        raw.close()
    assert kind == b"E", f"expected an error, got {kind!r}"
    fields = {f[:1]: f[1:].decode() for f in payload.split(b"\0") if f}
    return fields.get(b"M", "")
