"""A standby cluster in another region (`standby_of`), with real PostgreSQL and etcd:
it copies the primary cluster, fails over locally without promoting, is promoted by
`spofless pg promote-region` with the old cluster fenced first, and fails back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_regions import Regions, start_regions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def regions() -> Iterator[Regions]:
    with start_regions() as r:
        yield r


def _ids(node: object) -> set[int]:
    return {int(r[0]) for r in node.query("SELECT id FROM t")}  # type: ignore[attr-defined]


def test_rows_written_on_the_primary_reach_both_standby_members(regions: Regions) -> None:
    primary = regions.us.wait_healthy(standby=False)
    regions.eu.wait_healthy(standby=True)
    primary.query("INSERT INTO t (id) SELECT g FROM generate_series(1, 100) g")
    for node in regions.eu.nodes:
        regions.eu.wait(
            lambda n=node: len(_ids(n) & set(range(1, 101))) == 100,
            f"{node.name} has the 100 rows",
            30,
        )
    assert regions.eu.writable() == []


def test_kill_9_of_the_standby_leader_fails_over_inside_the_standby_cluster(
    regions: Regions,
) -> None:
    primary = regions.us.wait_healthy(standby=False)
    old = regions.eu.wait_healthy(standby=True)
    old.kill_node()
    regions.eu.wait(
        lambda: (n := regions.eu.leader()) is not None and n is not old,
        "the other standby member takes the standby cluster's lease",
        30,
    )
    new = regions.eu.leader()
    assert new is not None
    primary.query("INSERT INTO t (id) SELECT g FROM generate_series(101, 200) g")
    regions.eu.wait(lambda: set(range(101, 201)) <= _ids(new), f"{new.name} keeps replicating", 30)
    assert regions.eu.writable() == [], "a standby cluster never promotes by itself"
    old.wait_agent_exit()
    old.start()  # back to full redundancy: the old leader rejoins as a replica of the new
    regions.eu.wait_healthy(standby=True, bound=60)
    regions.eu.wait(lambda: set(range(101, 201)) <= _ids(old), f"{old.name} caught up", 30)
    assert regions.us.leader() is primary
