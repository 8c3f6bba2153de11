"""The etcd process helper and fixture against real etcd members."""

from __future__ import annotations

import etcd_fixtures
import httpx
import pytest
from etcd_fixtures import RunningCluster

from spofless.dcs.etcd_server import member_healthy

pytestmark = pytest.mark.integration

etcd_cluster = etcd_fixtures.etcd_cluster  # the fixture, for this module's tests


def test_cluster_of_three_is_healthy_and_replicates(etcd_cluster: RunningCluster) -> None:
    members = httpx.post(f"{etcd_cluster.endpoints[0]}/v3/cluster/member/list", json={}, timeout=5)
    assert len(members.json()["members"]) == 3
    assert all(member_healthy(url) for url in etcd_cluster.endpoints)


def test_killed_member_is_unhealthy_and_restarts(etcd_cluster: RunningCluster) -> None:
    name = etcd_cluster.names[1]
    etcd_cluster.kill(name)
    assert not member_healthy(etcd_cluster.cluster.member(name).client_url, timeout=0.5)
    etcd_cluster.restart(name)
    assert member_healthy(etcd_cluster.cluster.member(name).client_url)
