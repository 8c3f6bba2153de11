"""A standby cluster in another region (`standby_of`), with real PostgreSQL and etcd:
it copies the primary cluster, fails over locally without promoting, is promoted by
`spofless pg promote-region` with the old cluster fenced first, and fails back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pg_regions import Region, Regions, start_regions
from pg_writer import Writer

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


def _switch_under_writer(regions: Regions, frm: Region, to: Region, first: int) -> str:
    """promote-region of `to`'s region under a libpq writer over all four members; checks
    that no acknowledged write is lost and that the old cluster stopped acknowledging
    before the new one acknowledged anything. The command's output."""
    with Writer(regions.multihost(), first_id=first) as writer:
        frm.wait(lambda: writer.acks_since(0) > 20, "the writer writes", 20)
        started = time.monotonic()
        out = regions.spofless("pg", "promote-region", str(regions.file), "--region", to.region)
        assert out.returncode == 0, out.stdout + out.stderr
        to.wait(lambda: writer.acks_since(time.monotonic() - 0.5) > 5, "writes resume", 30)
        report = writer.stop()
    leader = to.wait_healthy(standby=False, bound=30)
    present = _ids(leader)
    lost = [a.id for a in report.acks if a.id not in present]
    new_ports = {n.pg_port for n in to.nodes}
    first_new = next(i for i, a in enumerate(report.acks) if a.port in new_ports)
    late = [a for a in report.acks[first_new:] if a.port not in new_ports]
    print(
        f"\n[promote-region {to.region}] client write pause {report.window(started):.2f}s, "
        f"{len(report.acks)} acknowledged, {len(lost)} lost; {out.stdout.strip()}"
    )
    assert lost == []
    assert late == [], "the old cluster acknowledged a write after the new one did"
    assert "write pause" in out.stdout and f"fenced {frm.component}" in out.stdout
    return out.stdout


def test_promote_region_fences_the_old_cluster_first_and_loses_no_write(
    regions: Regions,
) -> None:
    regions.us.wait_healthy(standby=False)
    regions.eu.wait_healthy(standby=True)
    _switch_under_writer(regions, regions.us, regions.eu, first=10_000)
    assert regions.us.writable() == []
    # The old primary cluster follows the new one (its old primary through pg_rewind).
    regions.us.wait_healthy(standby=True, bound=60)
    again = regions.spofless("pg", "promote-region", str(regions.file), "--region", "eu")
    assert again.returncode == 2 and "primary cluster already" in again.stderr


def test_failback_switches_back_with_no_lost_write(regions: Regions) -> None:
    regions.eu.wait_healthy(standby=False)
    regions.us.wait_healthy(standby=True, bound=60)
    _switch_under_writer(regions, regions.eu, regions.us, first=20_000)
    regions.eu.wait_healthy(standby=True, bound=60)
    postmasters = {n.name: n.postmaster_pid() for n in regions.eu.nodes}
    leader = regions.us.wait_healthy(standby=False)
    # Both clusters hold every row again: one database, two regions.
    ids = _ids(leader)
    for node in regions.eu.nodes:
        regions.eu.wait(lambda n=node: ids <= _ids(n), f"{node.name} has every row", 30)
    # Healthy meant done: no member was restarted (rewound) after it (a cascading
    # replica that got the new timeline before its leader published it once was).
    assert {n.name: n.postmaster_pid() for n in regions.eu.nodes} == postmasters


def test_promote_region_refuses_without_force_when_the_primary_cannot_be_reached(
    regions: Regions,
) -> None:
    regions.us.wait_healthy(standby=False)
    regions.eu.wait_healthy(standby=True)
    etcd = regions.etcd["us"]
    (name,) = etcd.names
    etcd.pause(name)  # the primary region's etcd does not answer
    try:
        out = regions.spofless("pg", "promote-region", str(regions.file), "--region", "eu")
    finally:
        etcd.resume(name)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cannot reach the etcd of db" in out.stderr and "--force" in out.stderr
    assert "Traceback" not in out.stderr
    # Nothing changed: eu is still a standby; the primary region recovers by itself
    # (its leader may have lost its lease while etcd was frozen).
    regions.us.wait_healthy(standby=False, bound=60)
    regions.eu.wait_healthy(standby=True, bound=60)
    assert regions.eu.writable() == []


def test_forced_promotion_then_the_lost_region_comes_back_as_a_standby(regions: Regions) -> None:
    primary = regions.us.wait_healthy(standby=False)
    regions.eu.wait_healthy(standby=True)
    primary.query("INSERT INTO t (id) SELECT g FROM generate_series(30001, 30100) g")
    regions.eu.wait(
        lambda: set(range(30001, 30101)) <= _ids(regions.eu.nodes[0]), "eu has the rows", 30
    )
    # The primary region is lost: every process in it killed at once.
    for node in regions.us.nodes:
        node.kill_node()
    (etcd_name,) = regions.etcd["us"].names
    regions.etcd["us"].kill(etcd_name)
    refused = regions.spofless("pg", "promote-region", str(regions.file), "--region", "eu")
    assert refused.returncode == 2 and "--force" in refused.stderr
    out = regions.spofless("pg", "promote-region", str(regions.file), "--region", "eu", "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NOT fenced" in out.stdout
    leader = regions.eu.wait_healthy(standby=False, bound=30)
    assert set(range(30001, 30101)) <= _ids(leader)
    leader.query("INSERT INTO t (id) VALUES (40001)")
    # The region comes back: its own etcd still says it is the primary cluster, but its
    # agents find the newer primary first and rejoin it as its standby (never writable).
    for node in regions.us.nodes:
        node.wait_agent_exit()
    regions.etcd["us"].restart(etcd_name)
    regions.us.start()
    deadline = time.monotonic() + 90
    while not regions.us.healthy(standby=True):
        assert regions.us.writable() == [], "the old primary region accepted writes"
        assert time.monotonic() < deadline, regions.us.logs()
        time.sleep(0.2)
    for node in regions.us.nodes:
        regions.us.wait(lambda n=node: 40001 in _ids(n), f"{node.name} follows eu", 30)
