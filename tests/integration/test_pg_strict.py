"""`synchronous: strict` keeps its promise: with no synchronous replica, commits wait
(and are never acknowledged), the primary never degrades, and after a failover every
acknowledged write is on the new primary."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pg_cluster import PgCluster, start_cluster
from pg_nemesis import Nemesis, caught_up
from pg_writer import Writer

from spofless.drill import check_data

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with start_cluster(synchronous="strict") as c:
        yield c


def test_strict_mode_waits_instead_of_degrading_and_loses_nothing(cluster: PgCluster) -> None:
    old = cluster.wait_healthy()
    replicas = [n for n in cluster.nodes if n is not old]
    with Writer(cluster.multihost(), first_id=10**9) as writer:
        cluster.wait(lambda: writer.acks_since(0) > 20, "the writer writes", 20)
        for r in replicas:
            r.kill_node()
            r.wait_agent_exit()
        alone_from = time.monotonic() + 1.0  # in-flight commits may still be answered
        time.sleep(4.0)
        alone_until = time.monotonic()
        body = httpx.get(f"{old.api}/status", timeout=1.0).json()
        assert body["degraded"] is False, "strict mode must never degrade"
        for r in replicas:
            r.start()
        Nemesis(cluster).wait_whole("the replicas' return", bound=60)
        cluster.wait(lambda: writer.acks_since(alone_until) > 20, "writes resume", 30)
        old.kill_node()
        old.wait_agent_exit()
        failover_at = time.monotonic()
        cluster.wait_new_primary(old, bound=30)
        cluster.wait(lambda: writer.acks_since(failover_at) > 20, "writes after failover", 30)
        old.start()
        Nemesis(cluster).wait_whole("the old primary's return", bound=60)
        report = writer.stop()
    alone = [a for a in report.acks if alone_from < a.at < alone_until]
    assert alone == [], f"acknowledged with no synchronous replica: {alone[:5]}"
    cluster.wait(lambda: caught_up(cluster), "replicas caught up", 30)
    primary = cluster.primary()
    assert primary is not None
    held = {n.name: {int(r[0]) for r in n.query("SELECT id FROM t")} for n in cluster.nodes}
    verdict = check_data(
        report.attempted, report.acknowledged, report.uncertain, primary.name, held
    )
    print(f"\n[strict] {verdict}")
    assert verdict.ok, str(verdict)
