"""The VIP agent: observe (etcd, own load balancer, the interface) -> decide -> act.

Three tasks feed one loop: the watch on the claim key (into a ClaimTracker),
the health monitor of this instance's load balancer, and, while this agent
holds the key, the renewal of its claim every heartbeat_interval. The loop
wakes on any of them or on the next deadline, calls `decide`, acts, and logs
one line whenever the decision changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from spofless._logging import setup_logging
from spofless.dcs import (
    CompactedError,
    Compare,
    DCSError,
    Delete,
    EtcdStore,
    Get,
    KeyValue,
    KeyValueStore,
    Leadership,
    LeadershipLost,
    campaign,
)
from spofless.health import HealthMonitor, Status, Target
from spofless.vip import _address
from spofless.vip._decide import (
    NEVER,
    Action,
    Claim,
    ClaimTracker,
    Decision,
    VipView,
    add_not_before,
    decide,
)
from spofless.vip._settings import VipSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_SLEEP = 0.01  # the loop looks at the clock at least this often


def _claim(kv: KeyValue | None) -> Claim | None:
    return None if kv is None else Claim.decode(kv.value, kv.create_revision, kv.mod_revision)


class AddressGuard:
    """The guard child (spofless.vip._guard): removes the address if this process cannot."""

    def __init__(self, address: ipaddress.IPv4Interface, interface: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spofless.vip._guard", address.with_prefixlen, interface,
             str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip

    def arm(self, deadline: float) -> None:
        self._send(f"arm {deadline:.6f}\n")

    def disarm(self) -> None:
        self._send("disarm\n")

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            logger.error("vip guard pid=%d is gone", self.proc.pid)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class VipAgent:
    """One instance's agent. `run()` until `stop()`; it leaves the address removed."""

    def __init__(self, config: VipSettings, store: KeyValueStore | None = None) -> None:
        self.config = config
        self.spec = config.spec
        self.me = config.instance
        self.address = config.address
        self.dcs = config.dcs_settings()
        self.store = store or EtcdStore(list(config.endpoints), self.dcs, watch_idle_timeout=3.0)
        self.tracker = ClaimTracker(self.me, time.monotonic())
        self.health = HealthMonitor(
            [Target(self.me, config.lb_host, config.lb_port)], self.spec.check,
            on_change=lambda _n, _t: self._wake.set(),
        )  # fmt: skip
        self.leadership: Leadership | None = None
        self.valid_until = NEVER
        self.add_not_before = NEVER
        self.address_present = False
        self.held = False  # this claim has had the address (so it may be marked released)
        self.announce_at = NEVER
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._renewer: asyncio.Task[None] | None = None
        self._renew_failing = False
        self._last_logged = ""
        self.interface = ""
        # pyroute2's IPRoute runs its own event loop: it lives in a thread of its own.
        self._netlink = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        self._ip: _address.Addresses | None = None
        self.guard: AddressGuard | None = None

    async def _nl(self, fn: Callable[..., T], *args: object) -> T:
        """Run one netlink call (an Addresses method) in the netlink thread."""
        return await asyncio.get_running_loop().run_in_executor(self._netlink, fn, *args)

    @property
    def ip(self) -> _address.Addresses:
        assert self._ip is not None, "run() opens the netlink socket"
        return self._ip

    # -- the loop ------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        spec = self.spec
        self._ip = await self._nl(_address.Addresses)
        self.interface = (
            spec.interface
            if spec.interface != "auto"
            else await self._nl(self.ip.find_interface, self.address)
        )
        _address.hardware_address(self.interface)  # fail early on a wrong interface
        if await self._nl(self.ip.remove, self.address, self.interface):
            logger.warning("%s: removed %s left on %s", self.me, self.address, self.interface)
        self.guard = AddressGuard(self.address, self.interface)
        logger.info(
            "%s: vip %s on %s, claim %s, hold_time %gs", self.me, self.address,
            self.interface, self.config.key, spec.hold_time,
        )  # fmt: skip
        self.health.start()
        self._tasks = [
            asyncio.create_task(self._watch_forever(), name="vip watch"),
            asyncio.create_task(self._read_guard(), name="vip guard"),
        ]
        try:
            while not self._stop.is_set():
                decision = decide(self.view())
                self._log(decision)
                await self._act(decision)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(MAX_SLEEP):
                        await self._wake.wait()
        finally:
            await self._shutdown()

    def view(self) -> VipView:
        leader = self.leadership is not None and not self.leadership.lost.is_set()
        claim = self.tracker.claim
        return VipView(
            me=self.me,
            now=time.monotonic(),
            lb_healthy=self.health.status(self.me) == Status.UP,
            address_present=self.address_present,
            leader=leader,
            valid_until=self.valid_until if leader else NEVER,
            add_not_before=self.add_not_before,
            claim=claim,
            claim_first_seen=self.tracker.first_seen,
            announce_at=self.announce_at,
            hold_time=self.spec.hold_time,
        )

    def _log(self, d: Decision) -> None:
        shape = re.sub(r"[0-9.]+s\b", "", d.reason)
        if d.action != Action.NOTHING or shape != self._last_logged:
            logger.info("%s: %s: %s", self.me, d.action, d.reason)
        self._last_logged = shape

    async def _act(self, d: Decision) -> None:
        try:
            if d.action == Action.CAMPAIGN:
                await self._campaign()
            elif d.action == Action.DEPOSE:
                await self._depose()
            elif d.action == Action.ADD:
                await self._add()
            elif d.action == Action.ANNOUNCE:
                await self._announce()
            elif d.action == Action.REMOVE:
                await self._remove()
            elif d.action == Action.RELEASE:
                await self._release()
        except (DCSError, TimeoutError) as exc:
            logger.warning("%s: %s failed: %s", self.me, d.action, str(exc) or type(exc).__name__)
            await asyncio.sleep(self.spec.heartbeat_interval)
        except OSError as exc:  # ip or the raw socket
            logger.error("%s: %s failed: %s", self.me, d.action, exc)
            await asyncio.sleep(self.spec.heartbeat_interval)

    # -- actions ---------------------------------------------------------------------

    async def _campaign(self) -> None:
        started = time.monotonic()
        value = Claim(self.me, "pending").encode()
        try:
            async with asyncio.timeout(self.spec.hold_time):
                leadership = await campaign(self.store, self.config.key, value, self.dcs)
        except TimeoutError:
            return  # someone else got it: the watch says who
        now = time.monotonic()
        self.leadership = leadership
        self.held = False
        self.valid_until = started + self.spec.hold_time
        self.add_not_before = add_not_before(
            self.tracker, now, self.spec.hold_time, self.spec.takeover_margin
        )
        leadership.add_lost_callback(lambda _reason: self._wake.set())
        self._renewer = asyncio.create_task(self._renew_forever(leadership), name="vip renew")
        logger.info(
            "%s: won the claim token=%d; may add the address in %.3fs", self.me,
            leadership.fencing_token, max(0.0, self.add_not_before - now),
        )  # fmt: skip

    async def _depose(self) -> None:
        claim = self.tracker.claim
        if claim is None:
            return
        key = self.config.key
        async with asyncio.timeout(self.spec.hold_time):
            result = await self.store.txn(
                [Compare.mod_revision(key, "==", claim.mod_revision)], [Delete(key)], [Get(key)]
            )
        now = time.monotonic()
        if not result.succeeded:
            kvs = result.responses[0] if result.responses else ()
            if kvs:  # changed: learn the claim now (the watch may be stuck)
                self.tracker.observe_read(_claim(kvs[0]), result.revision, now)
            # Gone: the watch delivers how (a released claim deleted lets us add at once).
            await asyncio.sleep(self.spec.heartbeat_interval)
            return
        logger.info("%s: deleted the claim of %s token=%d", self.me, claim.instance, claim.token)
        self.tracker.observe_delete(result.revision, now)
        await self._campaign()

    async def _add(self) -> None:
        assert self.guard is not None
        self.guard.arm(self.valid_until)
        await self._nl(self.ip.add, self.address, self.interface)
        self.address_present = True
        if time.monotonic() >= self.valid_until:  # the loop was late: undo at once
            await self._nl(self.ip.remove, self.address, self.interface)
            self.address_present = False
            logger.warning("%s: claim lapsed while adding the address; removed", self.me)
            return
        self.held = True
        logger.info("%s: added %s on %s", self.me, self.address, self.interface)
        self._tasks.append(asyncio.create_task(self._garp_burst(), name="vip garp"))
        self.announce_at = time.monotonic() + self.spec.garp_refresh

    async def _garp_burst(self) -> None:
        for i in range(self.spec.garp_count):
            if i:
                await asyncio.sleep(self.spec.garp_interval)
            if not self.address_present:
                return
            try:
                _address.send_garp(self.interface, self.address.ip)
            except OSError as exc:
                logger.error("%s: gratuitous ARP failed: %s", self.me, exc)

    async def _announce(self) -> None:
        self.announce_at = time.monotonic() + self.spec.garp_refresh
        still = await self._nl(self.ip.present, self.address, self.interface)
        if not still:  # removed behind our back (the guard, a person)
            logger.warning("%s: %s is no longer on %s", self.me, self.address, self.interface)
            self.address_present = False
            return
        _address.send_garp(self.interface, self.address.ip)

    async def _remove(self) -> None:
        assert self.guard is not None
        await self._nl(self.ip.remove, self.address, self.interface)
        self.guard.disarm()
        if self.address_present:
            logger.info("%s: removed %s from %s", self.me, self.address, self.interface)
        self.address_present = False

    async def _release(self) -> None:
        """Remove the address, then mark the claim released, then free the key."""
        await self._remove()
        leadership, self.leadership = self.leadership, None
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        self.valid_until = NEVER
        if leadership is None:
            return
        try:
            async with asyncio.timeout(self.spec.hold_time):
                if self.held:
                    await leadership.update(Claim(self.me, "released").encode())
        except (DCSError, TimeoutError) as exc:
            logger.warning("%s: could not mark the claim released: %s", self.me, exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.hold_time):
                await leadership.resign()

    # -- tasks -------------------------------------------------------------------------

    async def _renew_forever(self, leadership: Leadership) -> None:
        """Send a renewal of the claim every heartbeat_interval, without waiting for the
        previous one (one slow request must not cost the address); each success extends
        valid_until from the time it was sent."""
        interval = self.spec.heartbeat_interval
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not leadership.lost.is_set():
                sent = time.monotonic()
                if len(inflight) * interval < self.spec.hold_time:
                    task = asyncio.create_task(self._renew_once(leadership, sent))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                await asyncio.sleep(max(0.0, sent + interval - time.monotonic()))
        finally:
            for task in inflight:
                task.cancel()
            self._wake.set()

    async def _renew_once(self, leadership: Leadership, sent: float) -> None:
        claim = Claim(self.me, "holding" if self.held else "pending")
        try:
            async with asyncio.timeout(self.spec.hold_time):
                await leadership.update(claim.encode())
        except LeadershipLost:
            pass
        except (DCSError, TimeoutError) as exc:
            if not self._renew_failing:
                logger.warning("%s: renewal failed: %s", self.me, str(exc) or "timeout")
            self._renew_failing = True
        else:
            if self._renew_failing:
                logger.info("%s: renewal works again", self.me)
            self._renew_failing = False
            if leadership is self.leadership:
                self.valid_until = max(self.valid_until, sent + self.spec.hold_time)
                if self.guard is not None and self.address_present:
                    self.guard.arm(self.valid_until)
        self._wake.set()

    async def _watch_forever(self) -> None:
        key = self.config.key
        while True:
            try:
                result = await self.store.range(key)
                now = time.monotonic()
                self.tracker.observe_read(
                    _claim(result.kvs[0] if result.kvs else None), result.revision, now
                )
                self._wake.set()
                async with await self.store.watch(key, start_revision=result.revision + 1) as w:
                    async for event in w:
                        now = time.monotonic()
                        if event.type == "put":
                            claim = _claim(event.kv)
                            assert claim is not None
                            self.tracker.observe_put(claim, now)
                        else:
                            self.tracker.observe_delete(event.revision, now)
                        self._wake.set()
            except CompactedError:
                continue
            except DCSError as exc:
                logger.warning("%s: watch of the claim failed: %s", self.me, exc)
                await asyncio.sleep(self.spec.heartbeat_interval)

    async def _read_guard(self) -> None:
        assert self.guard is not None and self.guard.proc.stdout is not None
        out = self.guard.proc.stdout
        while True:
            line = await asyncio.to_thread(out.readline)
            if not line:
                if not self._stop.is_set():
                    logger.error("%s: the address guard exited; restarting it", self.me)
                    self.guard = AddressGuard(self.address, self.interface)
                    assert self.guard.proc.stdout is not None
                    out = self.guard.proc.stdout
                    if self.address_present:
                        self.guard.arm(self.valid_until)
                    continue
                return
            logger.warning("%s: guard: %s", self.me, line.decode().strip())
            self.address_present = False
            self._wake.set()

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self._release()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.health.stop()
        if self.guard is not None:
            self.guard.stop()
        await self.store.close()
        if self._ip is not None:
            await self._nl(self._ip.close)
        self._netlink.shutdown()
        logger.info("%s: stopped; %s is not here", self.me, self.address)


def run_vip(config: VipSettings) -> None:
    """Run the agent until SIGTERM or SIGINT (both leave the address removed)."""
    setup_logging(f"{config.instance} vip")

    async def main() -> None:
        agent = VipAgent(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    asyncio.run(main())
