"""Leader election on a real 3-member etcd: contenders, kill -9 of a holder, quorum loss."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import etcd_fixtures
import pytest
from etcd_fixtures import RunningCluster

from spofless.dcs import DCSSettings, DCSUnavailable, EtcdStore, campaign

pytestmark = pytest.mark.integration

etcd_cluster = etcd_fixtures.etcd_cluster  # the fixture, for this module's tests

CONTENDER = Path(__file__).with_name("dcs_contender.py")
# The same timings as the contender subprocess.
SETTINGS = DCSSettings(ttl=3, renew_interval=0.5, retry_timeout=0.5, request_timeout=0.25)


@contextlib.asynccontextmanager
async def contender(
    key: str, value: str, endpoints: list[str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A contender process, always killed and reaped at the end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CONTENDER),
        key,
        value,
        *endpoints,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def read_line(proc: asyncio.subprocess.Process, bound: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), bound)
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"contender exited: {(await proc.stderr.read()).decode()[-2000:]}")
    return line.decode().strip()


async def test_two_contenders_one_leader_then_the_other(etcd_cluster: RunningCluster) -> None:
    async with (
        EtcdStore(etcd_cluster.endpoints, SETTINGS) as s1,
        EtcdStore(etcd_cluster.endpoints, SETTINGS) as s2,
    ):
        first = await asyncio.wait_for(campaign(s1, "/elect", "one", SETTINGS), 10)
        second_task = asyncio.create_task(campaign(s2, "/elect", "two", SETTINGS))
        await asyncio.sleep(2 * SETTINGS.ttl)  # longer than a lease: renewals keep it
        assert first.is_leader and not second_task.done()
        assert (await s2.get("/elect")).value == "one"  # type: ignore[union-attr]
        await first.resign()
        second = await asyncio.wait_for(second_task, 5)
        assert second.fencing_token > first.fencing_token
        assert (await s1.get("/elect")).value == "two"  # type: ignore[union-attr]
        await second.resign()


async def test_kill_9_of_the_holder_process_hands_over_within_ttl(
    etcd_cluster: RunningCluster,
) -> None:
    async with (
        contender("/elect", "proc", etcd_cluster.endpoints) as proc,
        EtcdStore(etcd_cluster.endpoints, SETTINGS) as s,
    ):
        line = await read_line(proc, 20)
        assert line.startswith("LEADER "), line
        old_token = int(line.split()[1])
        waiting = asyncio.create_task(campaign(s, "/elect", "local", SETTINGS))
        await asyncio.sleep(1)
        assert not waiting.done()
        proc.kill()  # SIGKILL: no resign, no revoke; only the lease's expiry frees the key
        killed_at = time.monotonic()
        await proc.wait()
        leadership = await asyncio.wait_for(waiting, SETTINGS.ttl + 5)
        takeover = time.monotonic() - killed_at
        assert leadership.fencing_token > old_token
        assert takeover < SETTINGS.ttl + 2, f"takeover took {takeover:.2f}s"
        await leadership.resign()
    print(f"MEASURED takeover after kill -9 of the holder: {takeover:.2f}s (ttl {SETTINGS.ttl}s)")


async def test_quorum_lost_the_leader_steps_down_within_ttl(etcd_cluster: RunningCluster) -> None:
    """SIGSTOP two of three members: no renewal can succeed, so `lost` must fire by
    ttl - safety_margin after the last renewal sent, before the lease can expire."""
    raft_leader = etcd_cluster.leader()
    stopped = [raft_leader, next(n for n in etcd_cluster.names if n != raft_leader)]
    endpoints = etcd_cluster.endpoints_starting_with(raft_leader)
    settings = DCSSettings()
    async with EtcdStore(endpoints, settings) as s:
        leadership = await campaign(s, "/elect", "holder", settings)
        await asyncio.sleep(1.5)
        try:
            for name in stopped:
                etcd_cluster.pause(name)
            paused_at = time.monotonic()
            await asyncio.wait_for(leadership.lost.wait(), settings.ttl + 2)
            stepped_down = time.monotonic() - paused_at
            assert not leadership.is_leader
            assert stepped_down < settings.ttl - settings.safety_margin + 0.5, stepped_down
            # The lone member never serves a stale read; once it knows it has no leader
            # it refuses at once (hasleader) rather than hanging until the timeout. On a
            # loaded machine its first answers may still time out: allow a few tries.
            survivor = next(n for n in etcd_cluster.names if n not in stopped)
            refusals: list[str] = []
            async with EtcdStore([etcd_cluster.cluster.member(survivor).client_url]) as lone:
                for _ in range(5):
                    with pytest.raises(DCSUnavailable) as refused:
                        await lone.get("/elect")
                    refusals.append(str(refused.value))
                    if "no leader" in refusals[-1]:
                        break
            assert "no leader" in refusals[-1], refusals
        finally:
            for name in stopped:
                etcd_cluster.resume(name)
        # The cluster heals, and a new leadership can be won (after the old lease expires).
        again = await asyncio.wait_for(campaign(s, "/elect", "again", settings), 20)
        assert again.fencing_token > leadership.fencing_token
        await again.resign()
    print(
        f"MEASURED quorum lost -> holder stepped down after {stepped_down:.2f}s "
        f"(ttl {settings.ttl}s, safety margin {settings.safety_margin:g}s)"
    )
