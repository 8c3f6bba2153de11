"""The region lease (spofless.pg._region, spofless.pg.region_lease): each rule of the
module docstring, on plain views and on a MemoryStore standing in for the quorum etcd."""

from __future__ import annotations

import asyncio
import json

import pytest

from spofless.dcs import ManualClock, MemoryStore
from spofless.pg import Action, ClusterState, LeaderKey, Lease, LocalState, Role, View, decide
from spofless.pg._agent_model import RegionSettings
from spofless.pg._region import Claim, Mode, RegionView, Step, adopt, region_step
from spofless.pg.region_lease import RegionLease

R = "/spofless/t/db/region"
HELD = RegionView(valid_for=9.0, wanted_for=20.0, margin=2.0, owner=Claim("db", 0), cluster="db")
LOST = RegionView(valid_for=1.5, wanted_for=20.0, margin=2.0, owner=Claim("db", 0), cluster="db")
STARTING = RegionView(valid_for=0.0, wanted_for=0.5, margin=2.0, cluster="db")


# -- the pure rules -----------------------------------------------------------------


def test_the_primary_creates_the_region_first_and_a_standby_never_does() -> None:
    assert region_step("db", Mode.HOLD, 0, None, None)[0] is Step.CREATE
    step, why = region_step("db_eu", Mode.TAKE, 0, None, None)
    assert step is Step.WAIT and "never takes it first" in why


def test_the_owner_refreshes_and_a_standby_takes_only_an_expired_lease() -> None:
    owner = Claim("db", 3)
    assert region_step("db", Mode.HOLD, 3, owner, owner)[0] is Step.REFRESH
    assert region_step("db", Mode.HOLD, 3, owner, None)[0] is Step.REFRESH  # after a lapse
    assert region_step("db_eu", Mode.TAKE, 3, owner, owner)[0] is Step.WAIT
    step, why = region_step("db_eu", Mode.TAKE, 3, owner, None)
    assert step is Step.TAKE and "epoch 4" in why
    assert region_step("db_eu", Mode.IDLE, 3, owner, None)[0] is Step.WAIT


def test_a_superseded_primary_never_writes_the_region() -> None:
    step, why = region_step("db", Mode.HOLD, 3, Claim("db_eu", 4), None)
    assert step is Step.WAIT and "db_eu owns the region" in why


def test_a_newer_owner_is_adopted_an_older_one_ignored() -> None:
    assert adopt("db", 3, Claim("db_eu", 4)) == ("db_eu", 4)
    assert adopt("db_eu", 3, Claim("db_eu", 4)) == (None, 4)
    assert adopt("db", 4, Claim("db_eu", 4)) is None
    assert adopt("db", 0, None) is None


def primary(role: Role = Role.PRIMARY, running: bool = True) -> LocalState:
    return LocalState(has_data=True, running=running, role=role if running else None, timeline=1)


def view(local: LocalState, region: RegionView | None, standby_of: str | None = None) -> View:
    c = ClusterState(initialized=True, leader=LeaderKey("db-0", 7), standby_of=standby_of)
    return View("db-0", local, Lease(True, 7, 2.0), c, region=region)


def test_a_primary_renews_while_it_holds_the_region_and_steps_down_at_the_margin() -> None:
    assert decide(view(primary(), HELD)).action is Action.RENEW
    d = decide(view(primary(), LOST))
    assert d.action is Action.STEP_DOWN and "1.5s left" in d.reason
    # Just promoted or started: the first refresh is not in yet (the witness holds commits).
    assert decide(view(primary(), STARTING)).action is Action.RENEW


def test_a_primary_that_never_reaches_the_quorum_steps_down() -> None:
    never = RegionView(valid_for=0.0, wanted_for=2.5, margin=2.0, cluster="db")
    d = decide(view(primary(), never))
    assert d.action is Action.STEP_DOWN and "quorum etcd is not reached" in d.reason


def test_a_superseded_primary_steps_down_naming_the_owner() -> None:
    other = RegionView(valid_for=0.0, wanted_for=9.0, margin=2.0, owner=Claim("db_eu", 4))
    d = decide(view(primary(), other))
    assert d.action is Action.STEP_DOWN and "db_eu owns the region (epoch 4)" in d.reason


@pytest.mark.parametrize(
    ("local", "what"),
    [(primary(running=False), "starting as primary"), (primary(Role.REPLICA), "promoting")],
)
def test_no_start_nor_promotion_without_the_region(local: LocalState, what: str) -> None:
    d = decide(view(local, LOST))
    assert d.action is Action.WAIT and f"not {what}" in d.reason
    assert decide(view(local, HELD)).action in (Action.START_PRIMARY, Action.PROMOTE)


def test_without_a_region_lease_nothing_changes() -> None:
    assert decide(view(primary(), None)).action is Action.RENEW


def test_a_standby_leader_is_not_gated_by_the_region() -> None:
    replica = LocalState(
        has_data=True, running=True, role=Role.REPLICA, following="db", streaming=True
    )
    assert decide(view(replica, STARTING, standby_of="db")).action is Action.RENEW


# -- the task, on a MemoryStore standing in for the quorum etcd ----------------------


def settings(auto: bool) -> RegionSettings:
    return RegionSettings(endpoints=("http://x",), prefix=R, ttl=6, auto_promote=auto)


def cluster(standby_of: str | None, epoch: int = 0) -> ClusterState:
    return ClusterState(initialized=True, standby_of=standby_of, standby_epoch=epoch)


async def owner(store: MemoryStore) -> Claim | None:
    kv = await store.get(f"{R}/owner")
    return Claim.parse(kv.value) if kv else None


async def test_the_primary_holds_the_standby_takes_over_when_the_lease_expires() -> None:
    clock = ManualClock()
    quorum = MemoryStore(clock=clock)
    us = RegionLease("db-0", "db", settings(False), 0.1, store=quorum)
    eu = RegionLease("db_eu-0", "db_eu", settings(True), 0.1, store=quorum)
    now = asyncio.get_running_loop().time()
    replica = LocalState(has_data=True, running=True, role=Role.REPLICA)
    # First start: the primary creates the region, the standby watches.
    us.observe(cluster(None), True, primary(), now)
    await us.round()
    assert await owner(quorum) == Claim("db", 0) and us.valid(now)
    assert us.view(now).held and us.may_write(now)
    eu.observe(cluster("db"), True, replica, now)
    assert eu.mode is Mode.TAKE
    await eu.round()
    assert eu.owner == Claim("db", 0) and not eu.valid(now)
    # Refreshed while it lives.
    clock.advance(4)
    await us.round()
    await eu.round()
    assert await owner(quorum) == Claim("db", 0)
    # The primary region is cut off: no refresh; etcd expires the lease after the ttl.
    clock.advance(6.5)
    await eu.round()
    assert await owner(quorum) == Claim("db_eu", 1) and eu.valid(now)
    lease = await quorum.get(f"{R}/lease")
    assert lease is not None and json.loads(lease.value)["cluster"] == "db_eu"
    # The standby adopts: its own etcd says it is the primary cluster at epoch 1.
    eu_etcd = MemoryStore()
    state = await eu.apply(eu_etcd, "/p/db_eu", cluster("db"))
    assert (state.standby_of, state.standby_epoch) == (None, 1)
    kv = await eu_etcd.get("/p/db_eu/standby")
    assert kv is not None and json.loads(kv.value) == {"of": None, "epoch": 1}
    # The old primary is back: it reads the new owner, loses the region, adopts.
    await us.round()
    assert not us.valid(now) and not us.may_write(now)
    us_etcd = MemoryStore()
    state = await us.apply(us_etcd, "/p/db", cluster(None))
    assert (state.standby_of, state.standby_epoch) == ("db_eu", 1)
    # As a standby now (idle), it never writes the region again.
    us.observe(state, True, primary(running=False), now)
    assert us.mode is Mode.IDLE and us.may_write(now)
    await us.round()
    assert await owner(quorum) == Claim("db_eu", 1)


async def test_a_minority_side_cannot_take_over() -> None:
    clock = ManualClock()
    quorum = MemoryStore(clock=clock)
    us = RegionLease("db-0", "db", settings(False), 0.1, store=quorum)
    eu = RegionLease("db_eu-0", "db_eu", settings(True), 0.1, store=quorum)
    now = asyncio.get_running_loop().time()
    us.observe(cluster(None), True, primary(), now)
    await us.round()
    eu.observe(cluster("db"), True, LocalState(True, running=True, role=Role.REPLICA), now)
    clock.advance(7)
    quorum.available = False  # eu is the side without the quorum's majority
    with pytest.raises(Exception, match="unavailable"):
        await eu.round()
    assert not eu.valid(now) and eu.owner is None
    quorum.available = True
    await us.round()  # the primary came first after the outage: it takes its own back
    assert await owner(quorum) == Claim("db", 0) and us.valid(asyncio.get_running_loop().time())
    await eu.round()
    assert await owner(quorum) == Claim("db", 0)


async def test_a_local_failover_moves_the_lease_to_the_new_leader() -> None:
    quorum = MemoryStore()
    old = RegionLease("db-0", "db", settings(False), 0.1, store=quorum)
    new = RegionLease("db-1", "db", settings(False), 0.1, store=quorum)
    now = asyncio.get_running_loop().time()
    old.observe(cluster(None), True, primary(), now)
    await old.round()
    new.observe(cluster(None), True, primary(Role.REPLICA), now)
    await new.round()
    lease = await quorum.get(f"{R}/lease")
    assert new.valid(now) and lease is not None and lease.lease == new._lease_id


def test_with_a_region_lease_the_witness_is_named_beside_a_synchronous_replica() -> None:
    from spofless.pg.sync import standby_names
    from spofless.pg.witness import with_witness

    assert with_witness(standby_names("db-1")) == 'FIRST 2 ("db-1", "spofless_fence")'


def test_a_rewind_whose_source_went_away_runs_again_one_that_failed_on_data_does_not() -> None:
    from spofless.pg.server import PostgresServer

    lost = (
        "pg_rewind failed (exit 1): pg_rewind: rewinding from last common checkpoint at "
        "0/50B8370 on timeline 3 | pg_rewind: error: unexpected result while fetching remote "
        "files: server closed the connection unexpectedly"
    )
    assert PostgresServer.rewind_source_lost(lost)
    data = "pg_rewind failed (exit 1): pg_rewind: error: could not find previous WAL record"
    assert not PostgresServer.rewind_source_lost(data)


@pytest.mark.parametrize("ttl", [2, 6, 10, 3600])
def test_the_quorum_client_timings_fit_any_region_ttl(ttl: int) -> None:
    s = RegionSettings(endpoints=("http://x",), prefix=R, ttl=ttl)
    lease = RegionLease("db-0", "db", s, 0.5)
    assert lease.store.settings.retry_timeout <= s.margin
