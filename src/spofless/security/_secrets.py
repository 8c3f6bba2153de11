"""The secrets directory of a topology: layout, creation, reading (see the package)."""

from __future__ import annotations

import ipaddress
import os
import secrets as _random
from pathlib import Path

from cryptography import x509

from spofless.dcs import EtcdTls
from spofless.errors import SpoflessError
from spofless.security._ca import issue, new_ca
from spofless.topology import PostgresComponent, SecuritySpec, Topology

# role in the secrets directory -> the PostgreSQL user it is the password of
PG_USERS = {"superuser": "postgres", "replication": "replicator", "rewind": "rewinder"}
PG_ROLES = tuple(PG_USERS)
LOCALHOST = "localhost"  # the host of instances placed on none


class SecretsError(SpoflessError):
    """A secret is missing or unreadable; the message says which and how to make it."""


def security_spec(topology: Topology) -> SecuritySpec:
    return SecuritySpec.model_validate(topology.data.get("security") or {})


def secrets_dir(topology: Topology) -> Path:
    """Where `topology`'s secrets are (the directory need not exist yet)."""
    source = Path(topology.source)
    spec = security_spec(topology)
    if spec.secrets is not None:
        p = Path(spec.secrets)
        return p if p.is_absolute() else (source.parent / p).resolve()
    return (source.parent / ".spofless" / source.stem / "secrets").resolve()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _host_addresses(topology: Topology) -> dict[str, str]:
    out = {name: h.address for name, h in topology.hosts.items()}
    out[LOCALHOST] = "127.0.0.1"
    return out


def init_secrets(topology: Topology) -> list[Path]:
    """Make every missing secret of `topology`; what was made.

    Only where the secrets are kept: with the CA key, or for a new topology (no CA
    yet: one is made first). Where the directory is a copy without `ca.key`, nothing
    is made, so that no machine makes passwords or a CA of its own that the others
    would not share: a file missing there is reported by the part that needs it.
    Nothing existing is changed, except a host certificate no longer valid for its
    host's address (re-issued).
    """
    d = secrets_dir(topology)
    ca_crt, ca_key = d / "ca.crt", d / "ca.key"
    if ca_crt.exists() and not ca_key.exists():
        return []
    if ca_key.exists() and not ca_crt.exists():
        raise SecretsError(f"{ca_key} is there without {ca_crt}: copy ca.crt beside it")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    made: list[Path] = []
    if not ca_crt.exists():
        crt, key = new_ca(topology.name)
        _write(ca_key, key)
        _write(ca_crt, crt)
        made += [ca_crt, ca_key]
    for host in _host_addresses(topology):
        if _ensure_host_cert(topology, host):
            made.append(d / "hosts" / f"{host}.crt")
    client_crt = d / "clients" / "spofless.crt"
    if not client_crt.exists():
        crt, key = issue(ca_crt.read_bytes(), ca_key.read_bytes(), "spofless", server=False)
        _write(d / "clients" / "spofless.key", key)
        _write(client_crt, crt)
        made.append(client_crt)
    for name, comp in topology.components.items():
        if not isinstance(comp, PostgresComponent) or comp.standby_of is not None:
            continue  # a standby cluster has its primary cluster's passwords
        for role in PG_ROLES:
            f = d / "postgres" / name / role
            if not f.exists():
                _write(f, (_random.token_urlsafe(24) + "\n").encode())
                made.append(f)
    for sub in d.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o700)
    return made


def _how(topology: Topology) -> str:
    """How to get a missing secret: made where the CA key is, copied elsewhere."""
    how = f"run `spofless secrets init {topology.source}`"
    if (secrets_dir(topology) / "ca.crt").exists() and not (
        secrets_dir(topology) / "ca.key"
    ).exists():
        how += " where ca.key is and copy the file here (this directory is a copy)"
    return how


def password(topology: Topology, component: str, role: str) -> str:
    """The password of PostgreSQL `role` (superuser, replication, rewind) of `component`.

    A standby cluster has its primary cluster's (`standby_of`): its data, roles
    included, is a copy of that cluster's."""
    if component in topology.components:
        component = topology.cluster_group(component)[0]
    env = f"SPOFLESS_SECRET_{component}_{role}".upper().replace("-", "_")
    if os.environ.get(env):
        return os.environ[env]
    f = secrets_dir(topology) / "postgres" / component / role
    try:
        text = f.read_text().strip()
    except OSError:
        raise SecretsError(
            f"no {role} password for {component!r}: {f} is missing (and ${env} unset); "
            f"{_how(topology)}"
        ) from None
    if not text:
        raise SecretsError(f"{f} is empty: put the {role} password of {component!r} in it")
    return text


def ca_file(topology: Topology) -> Path:
    f = secrets_dir(topology) / "ca.crt"
    if not f.exists():
        raise SecretsError(f"no CA certificate {f}: {_how(topology)}")
    return f


def client_cert(topology: Topology) -> tuple[Path, Path]:
    d = secrets_dir(topology) / "clients"
    crt, key = d / "spofless.crt", d / "spofless.key"
    if not crt.exists() or not key.exists():
        raise SecretsError(f"no client certificate {crt}: {_how(topology)}")
    return crt, key


def etcd_client_tls(topology: Topology, *, check: bool = True) -> EtcdTls | None:
    """What spofless's parts present to the topology's etcd and verify it with (the CA
    and the client certificate); None with TLS off. With `check`, SecretsError when a
    file is missing; without, only the paths (a plan, made before the files)."""
    if not security_spec(topology).tls:
        return None
    if check:
        ca_file(topology)
        client_cert(topology)
    d = secrets_dir(topology)
    return EtcdTls(
        ca=d / "ca.crt", cert=d / "clients" / "spofless.crt", key=d / "clients" / "spofless.key"
    )


def etcd_member_tls(topology: Topology, host: str | None) -> EtcdTls | None:
    """The files an etcd member on `host` serves clients and peers with (the host's
    certificate, the CA it requires of them); None with TLS off. Only paths: `up` makes
    the files first (init_secrets, for the addresses it runs at)."""
    if not security_spec(topology).tls:
        return None
    d = secrets_dir(topology)
    name = host or LOCALHOST
    return EtcdTls(
        ca=d / "ca.crt", cert=d / "hosts" / f"{name}.crt", key=d / "hosts" / f"{name}.key"
    )


def host_cert(topology: Topology, host: str | None) -> tuple[Path, Path]:
    """The certificate and key of `host` (None: instances placed on no host), issued
    again when its address changed (e.g. in the lab) and the CA key is at hand."""
    name = host or LOCALHOST
    _ensure_host_cert(topology, name)
    d = secrets_dir(topology) / "hosts"
    return d / f"{name}.crt", d / f"{name}.key"


def _ensure_host_cert(topology: Topology, host: str) -> bool:
    """Issue `host`'s certificate when missing or not valid for its address; whether it did."""
    d = secrets_dir(topology)
    address = _host_addresses(topology).get(host, "127.0.0.1")
    crt, key = d / "hosts" / f"{host}.crt", d / "hosts" / f"{host}.key"
    if crt.exists() and key.exists() and _covers(crt, address):
        return False
    ca_crt, ca_key = d / "ca.crt", d / "ca.key"
    if not ca_crt.exists() or not ca_key.exists():
        raise SecretsError(
            f"{crt} is missing or not valid for {address}, and no CA key in {d} to issue it: "
            f"run `spofless secrets init {topology.source}` where the CA key is"
        )
    addresses = sorted({address, "127.0.0.1"})
    new_crt, new_key = issue(
        ca_crt.read_bytes(), ca_key.read_bytes(), host, addresses, names=["localhost"]
    )
    _write(key, new_key)
    _write(crt, new_crt)
    return True


def _covers(crt: Path, address: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, OSError):
        return False
    return ipaddress.ip_address(address) in san.get_values_for_type(x509.IPAddress)


def client_params(topology: Topology, component: str) -> dict[str, str]:
    """What a client of postgres component `component` adds to its connection string:
    the superuser's password and, with TLS, the CA to verify the server with."""
    params = {"password": password(topology, component, "superuser")}
    if security_spec(topology).tls:
        params.update(sslmode="verify-full", sslrootcert=str(ca_file(topology)))
    return params
