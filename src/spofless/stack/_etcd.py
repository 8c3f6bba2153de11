"""etcd members as stack instances: their command lines come from spofless.dcs.etcd_server.

The stack runs each member as one supervised process like any other instance
(own process group, log in the state dir, restart with backoff); only the
command line is etcd's, built by the same `etcd_command` the dcs tests use.
A restarted member keeps its data dir and rejoins with it (etcd then ignores
the initial-cluster flags).
"""

from __future__ import annotations

from collections.abc import Sequence

from spofless.dcs import DCSError, EtcdStore
from spofless.dcs.etcd_server import EtcdCluster, EtcdMember, etcd_command
from spofless.stack._kinds import EtcdMemberSpec


def member_argv(spec: EtcdMemberSpec) -> Sequence[str]:
    """The command line of one member of the cluster `spec` describes."""
    data_root = spec.data_dir.parent
    cluster = EtcdCluster(
        members=tuple(
            EtcdMember(
                name=m.name,
                data_dir=data_root / m.name,
                client_url=f"http://{m.ip}:{m.client_port}",
                peer_url=f"http://{m.ip}:{m.peer_port}",
            )
            for m in spec.cluster
        ),
        token=spec.cluster_token,
    )
    return etcd_command(cluster, spec.member.name)


async def member_role(ip: str, client_port: int) -> str | None:
    """`leader` or `follower` as the member at ip:port sees itself; None when it cannot tell."""
    store = EtcdStore([f"http://{ip}:{client_port}"])
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
