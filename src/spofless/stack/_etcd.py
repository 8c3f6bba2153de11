"""etcd members as stack instances: their command lines come from spofless.dcs.etcd_server.

The stack runs each member as one supervised process like any other instance
(own process group, log in the state dir, restart with backoff); only the
command line is etcd's, built by the same `etcd_command` the dcs tests use.
A restarted member keeps its data dir and rejoins with it (etcd then ignores
the initial-cluster flags). With the topology's TLS on, every member serves
https with its host's certificate and requires certificates of clients and peers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from spofless.dcs import DCSError, DCSSettings, EtcdStore, EtcdTls
from spofless.dcs.etcd_server import EtcdCluster, EtcdMember, etcd_command
from spofless.stack._kinds import EtcdMemberSpec


def member_argv(spec: EtcdMemberSpec) -> Sequence[str]:
    """The command line of one member of the cluster `spec` describes."""
    data_root = spec.data_dir.parent
    scheme = "https" if spec.tls is not None else "http"
    cluster = EtcdCluster(
        members=tuple(
            EtcdMember(
                name=m.name,
                data_dir=data_root / m.name,
                client_url=f"{scheme}://{m.ip}:{m.client_port}",
                peer_url=f"{scheme}://{m.ip}:{m.peer_port}",
                # Only this member's own certificate matters to its command line.
                tls=spec.tls,
            )
            for m in spec.cluster
        ),
        token=spec.cluster_token,
    )
    return etcd_command(cluster, spec.member.name)


async def member_role(ip: str, client_port: int, tls: EtcdTls | None = None) -> str | None:
    """`leader` or `follower` as the member at ip:port sees itself; None when it cannot tell.
    `tls`: the client certificate a member with TLS requires."""
    scheme = "https" if tls is not None else "http"
    try:
        store = EtcdStore([f"{scheme}://{ip}:{client_port}"], DCSSettings(tls=tls))
    except OSError:  # a certificate file missing or unreadable
        return None
    try:
        status = await store.call("/maintenance/status", {})
    except DCSError:
        return None
    finally:
        await store.close()
    member = status.get("header", {}).get("member_id")
    leader = status.get("leader")
    if member is None or leader is None:
        return None
    return "leader" if str(member) == str(leader) else "follower"


def peer_scheme(argv: Sequence[str]) -> str:
    """`https` when a member's command line has it speak TLS to its peers, else `http`."""
    return "https" if any(a.startswith("--listen-peer-urls=https") for a in argv) else "http"


def scheme_marker(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".scheme")


def data_scheme(data_dir: Path) -> str | None:
    """How the members spoke when this data directory was made: None for no directory;
    `http` for one made before spofless recorded it (it had no TLS then)."""
    if not (data_dir / "member").exists():
        return None
    try:
        return scheme_marker(data_dir).read_text().strip() or "http"
    except FileNotFoundError:
        return "http"


def record_scheme(data_dir: Path, argv: Sequence[str]) -> None:
    """Written when a member starts on a new data directory (see data_scheme)."""
    if not (data_dir / "member").exists():
        scheme_marker(data_dir).write_text(peer_scheme(argv) + "\n")
