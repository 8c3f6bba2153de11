"""Automatic region promotion on 127.0.0.1 (spofless.pg._region): a standby cluster with
`auto_promote`, a quorum etcd of three members (us, eu, witness), `db` synchronous (its
fence witness named beside its synchronous replica). The whole primary region dies (kill
-9 of its agents, PostgreSQL and etcd, and its quorum member): eu promotes itself; us
comes back as eu's standby, never writable. A planned `promote-region` back moves the
quorum's region owner too, and eu does not take the region back. The cut-off-but-alive
case is the lab's (test_pg_region_lab.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from pg_regions import Regions, start_regions

from spofless.dcs import EtcdStore

pytestmark = pytest.mark.integration


@pytest.fixture
def regions() -> Iterator[Regions]:
    with start_regions(auto_promote=True) as r:
        yield r


def _ids(node: object) -> set[int]:
    return {int(r[0]) for r in node.query("SELECT id FROM t")}  # type: ignore[attr-defined]


async def _owner(regions: Regions) -> dict[str, object]:
    store = EtcdStore(regions.etcd["quorum"].endpoints)
    try:
        kv = await store.get(f"/spofless/{regions.name}/db/region/owner")
    finally:
        await store.close()
    assert kv is not None
    return json.loads(kv.value)  # type: ignore[no-any-return]


def test_the_standby_region_promotes_itself_when_the_primary_region_is_lost(
    regions: Regions,
) -> None:
    primary = regions.us.wait_healthy(standby=False)
    regions.eu.wait_healthy(standby=True)
    assert asyncio.run(_owner(regions)) == {"cluster": "db", "epoch": 0}
    # Synchronous us: commits wait for the replica and for the fence witness (which
    # acknowledges only while the region lease is valid).
    replica = next(n for n in regions.us.nodes if n is not primary)
    both = f'FIRST 2 ("{replica.name}", "spofless_fence")'
    regions.us.wait(
        lambda: primary.query("SHOW synchronous_standby_names")[0][0] == both,
        "the witness named beside the synchronous replica",
        30,
    )
    primary.query("INSERT INTO t (id) SELECT g FROM generate_series(1, 100) g")
    regions.eu.wait(lambda: set(range(1, 101)) <= _ids(regions.eu.nodes[0]), "eu has rows", 30)

    # The primary region is lost: every process in it, its quorum member too.
    lost_at = time.monotonic()
    for node in regions.us.nodes:
        node.kill_node()
    (etcd_us,) = regions.etcd["us"].names
    regions.etcd["us"].kill(etcd_us)
    quorum_us = regions.etcd["quorum"].names[0]
    regions.etcd["quorum"].kill(quorum_us)
    leader = regions.eu.wait_healthy(standby=False, bound=60)
    print(f"\n[auto promote] region lost -> eu primary {time.monotonic() - lost_at:.1f}s")
    assert asyncio.run(_owner(regions)) == {"cluster": "db_eu", "epoch": 1}
    assert set(range(1, 101)) <= _ids(leader)
    leader.query("INSERT INTO t (id) VALUES (40001)")

    # The region comes back: its etcd still says it is primary; the quorum says eu owns
    # the region (epoch 1), so it becomes eu's standby, its old primary rewound.
    for node in regions.us.nodes:
        node.wait_agent_exit()
    regions.etcd["us"].restart(etcd_us)
    regions.etcd["quorum"].restart(quorum_us)
    regions.us.start()
    deadline = time.monotonic() + 90
    while not regions.us.healthy(standby=True):
        assert regions.us.writable() == [], "the old primary region accepted writes"
        assert time.monotonic() < deadline, regions.us.logs()
        time.sleep(0.2)
    for node in regions.us.nodes:
        regions.us.wait(lambda n=node: 40001 in _ids(n), f"{node.name} follows eu", 30)

    # Failback by hand, planned: the quorum's owner moves too, and eu stays a standby
    # (it does not take the region back when the old holder's lease lapses).
    out = regions.spofless("pg", "promote-region", str(regions.file), "--region", "us")
    assert out.returncode == 0, out.stdout + out.stderr
    regions.us.wait_healthy(standby=False, bound=30)
    assert asyncio.run(_owner(regions)) == {"cluster": "db", "epoch": 2}
    regions.eu.wait_healthy(standby=True, bound=90)
    time.sleep(8)  # longer than the region ttl (6 s): eu's old lease has lapsed
    assert regions.eu.writable() == []
    assert regions.us.healthy(standby=False)
