"""Randomized fault sequences on a real PostgreSQL cluster under concurrent writers.

A seeded schedule (spofless.drill) of faults on the primary's node, its postmaster,
its agent, a replica, a member being repaired, the etcd leader, and switchovers;
after every fault the cluster must be whole again within a bound: one primary and
every other member streaming from it on its timeline (pg_stat_replication agrees,
and so does every member's /health). At the end no acknowledged write is lost,
none appears from nowhere, and every member holds exactly the primary's rows.

The seed is printed; replay one with SPOFLESS_FAULT_SEEDS=7 (comma-separated for
several) and SPOFLESS_FAULTS=N. benchmarks/pg_random_faults runs the long version.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from pg_cluster import PgCluster, start_cluster
from pg_nemesis import Nemesis, caught_up
from pg_writer import Writer

from spofless.drill import check_data, draw_schedule

pytestmark = pytest.mark.integration

SEEDS = [int(s) for s in os.environ.get("SPOFLESS_FAULT_SEEDS", "20261204").split(",")]
FAULTS = int(os.environ.get("SPOFLESS_FAULTS", "9"))  # the suite's short version
WRITERS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with start_cluster(synchronous=True) as c:
        yield c


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("seed", SEEDS)
def test_random_fault_sequence_heals_and_loses_nothing(cluster: PgCluster, seed: int) -> None:
    schedule = draw_schedule(seed, FAULTS)
    print(f"\n[seed {seed}] {len(schedule)} faults: {', '.join(str(f) for f in schedule)}")
    nemesis = Nemesis(cluster)
    nemesis.wait_whole("the start")
    writers = [
        Writer(cluster.multihost(), first_id=(seed % 1000) * 10**9 + w * 10**8 + 1)
        for w in range(WRITERS)
    ]
    for w in writers:
        w.__enter__()
    try:
        for fault in schedule:
            started = time.monotonic()
            outcome = nemesis.apply(fault)
            print(
                f"[seed {seed}] {fault} on {outcome.target}: whole again "
                f"{outcome.healed_in:.1f}s after ({time.monotonic() - started:.1f}s in all)"
                + (f"; {outcome.note}" if outcome.note else "")
            )
    finally:
        reports = [w.stop() for w in writers]
    cluster.wait(lambda: caught_up(cluster), "replicas caught up with the primary", 30)
    primary = cluster.primary()
    assert primary is not None
    held = {n.name: {int(r[0]) for r in n.query("SELECT id FROM t")} for n in cluster.nodes}
    verdict = check_data(
        attempted=[i for r in reports for i in r.attempted],
        acknowledged=[i for r in reports for i in r.acknowledged],
        uncertain=[i for r in reports for i in r.uncertain],
        primary=primary.name,
        members=held,
    )
    print(f"[seed {seed}] {verdict}")
    assert verdict.acknowledged > 100, "the writers must have written through the faults"
    assert verdict.ok, f"seed {seed}: {verdict}"
