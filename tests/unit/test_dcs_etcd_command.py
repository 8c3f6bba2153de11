"""The etcd command line and cluster description (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from spofless.dcs.etcd_server import EtcdCluster, etcd_command, local_cluster


def test_command_names_every_member() -> None:
    cluster = EtcdCluster.model_validate(
        {
            "members": [
                {
                    "name": "a",
                    "data_dir": "/d/a",
                    "client_url": "http://127.0.0.1:1",
                    "peer_url": "http://127.0.0.1:2",
                },
                {
                    "name": "b",
                    "data_dir": "/d/b",
                    "client_url": "http://127.0.0.1:3",
                    "peer_url": "http://127.0.0.1:4",
                },
            ]
        }
    )
    cmd = etcd_command(cluster, "b")
    assert "--initial-cluster=a=http://127.0.0.1:2,b=http://127.0.0.1:4" in cmd
    assert "--listen-client-urls=http://127.0.0.1:3" in cmd
    assert "--initial-cluster-state=new" in cmd


def test_local_cluster_ports_and_dirs(tmp_path: Path) -> None:
    c = local_cluster(tmp_path, [11, 12, 13], [21, 22, 23])
    assert c.client_urls == ["http://127.0.0.1:11", "http://127.0.0.1:12", "http://127.0.0.1:13"]
    assert c.member("etcd2").data_dir == tmp_path / "etcd2"
    assert c.initial_cluster.count("=") == 3


def test_rejects_duplicate_urls_and_tight_election(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must all differ"):
        local_cluster(tmp_path, [11, 11], [21, 22])
    with pytest.raises(ValidationError, match="raise the election timeout"):
        local_cluster(tmp_path, [11], [21], heartbeat_interval_ms=100, election_timeout_ms=300)


def test_a_member_with_tls_requires_certificates_of_clients_and_peers(tmp_path: Path) -> None:
    from spofless.dcs import EtcdTls

    tls = EtcdTls(ca=Path("/s/ca.crt"), cert=Path("/s/h.crt"), key=Path("/s/h.key"))
    c = local_cluster(tmp_path, [11], [21], tls=tls)
    assert c.client_urls == ["https://127.0.0.1:11"]
    cmd = etcd_command(c, "etcd0")
    for flag in (
        "--cert-file=/s/h.crt",
        "--key-file=/s/h.key",
        "--trusted-ca-file=/s/ca.crt",
        "--client-cert-auth=true",
        "--peer-cert-file=/s/h.crt",
        "--peer-key-file=/s/h.key",
        "--peer-trusted-ca-file=/s/ca.crt",
        "--peer-client-cert-auth=true",
        "--listen-client-urls=https://127.0.0.1:11",
        "--initial-advertise-peer-urls=https://127.0.0.1:21",
    ):
        assert flag in cmd
    # https without a certificate, or a certificate on http, is a contradiction.
    member = {"name": "a", "data_dir": "/d", "client_url": "https://h:1", "peer_url": "https://h:2"}
    with pytest.raises(ValidationError, match="must be http://host:port"):
        EtcdCluster.model_validate({"members": [member]})
    with pytest.raises(ValidationError, match="must be https://host:port"):
        EtcdCluster.model_validate(
            {"members": [member | {"client_url": "http://h:1", "tls": tls.model_dump()}]}
        )
