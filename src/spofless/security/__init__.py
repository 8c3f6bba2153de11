"""Secrets and certificates: where they live, how they are made, how the parts read them.

A topology's secrets live in one directory, never in the topology file: `security:
{secrets: DIR}` names it (relative to the file), by default `.spofless/<stem>/secrets`
beside it. `spofless secrets init FILE` makes whatever is missing (and `up` does, the
first time); every file is 0600, the directory 0700:

    ca.crt, ca.key                      the topology's own certificate authority
    hosts/<host>.crt, <host>.key        a server (and client) certificate per host, for
                                        its address and 127.0.0.1: PostgreSQL and etcd
                                        serve with it, etcd members present it to their
                                        peers; instances placed on no host use
                                        `localhost` (127.0.0.1)
    clients/spofless.crt, .key          what spofless's own parts present to etcd (a
                                        client certificate: no address, client usage only)
    postgres/<component>/superuser      PostgreSQL passwords, one line each: the
    postgres/<component>/replication    superuser (`postgres`), the replication user
    postgres/<component>/rewind         (`replicator`) and the pg_rewind user (`rewinder`)

An environment variable overrides a password file: SPOFLESS_SECRET_<COMPONENT>_<ROLE>
(upper case, `-` as `_`), e.g. SPOFLESS_SECRET_DB_SUPERUSER.

With `tls` on (the default), etcd members run over https and refuse any client or peer
without a certificate from the CA: only spofless's parts (the stack, the PostgreSQL and
VIP agents, `spofless pg`, spofless.client) reach the cluster's keys.

On several machines, copy the directory to each (the CA key only where certificates
may be issued: a host certificate whose address changed is re-issued when `ca.key` is
there, else the part refuses to start and says so). Where the directory is a copy
without `ca.key`, `init_secrets` makes nothing: no CA or passwords of its own.
"""

from spofless.security._secrets import (
    PG_ROLES,
    PG_USERS,
    SecretsError,
    ca_file,
    client_cert,
    client_params,
    etcd_client_tls,
    etcd_member_tls,
    host_cert,
    init_secrets,
    password,
    secrets_dir,
    security_spec,
)

__all__ = [
    "PG_ROLES",
    "PG_USERS",
    "SecretsError",
    "ca_file",
    "client_cert",
    "client_params",
    "etcd_client_tls",
    "etcd_member_tls",
    "host_cert",
    "init_secrets",
    "password",
    "secrets_dir",
    "security_spec",
]
