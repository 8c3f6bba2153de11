"""One monitor instance: observe -> analyse -> notify, and its /status and /metrics.

    run_monitor(settings)          until SIGTERM/SIGINT (the CLI's entry point)
    Monitor(settings).run(stop)    the same, stopped by an asyncio.Event

Every `interval` the monitor looks at every instance at once (each look
bounded by `probe_timeout`), folds the looks into its live state, and when the
set of down elements changed it re-runs the analysis on the live state, which
gives the alerts (`_alerts`). A separate task delivers notifications: it
claims each in etcd (`_claim`), groups the claimed ones and sends them to
every receiver, then marks them sent; a slow receiver never delays a look.
One sentence per change is logged; every event goes to the SQLite history.
A look that timed out while the monitor itself was late is unknown, not a
failure (`_starve`). Its settings come from the topology (`_settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from spofless.dcs import DCSError, EtcdStore, KeyValueStore
from spofless.monitor._alerts import Alert, AlertBook, Notification, redundancy_alerts
from spofless.monitor._claim import ClaimStore, Verdict
from spofless.monitor._flap import FlapDamper
from spofless.monitor._history import Event, History
from spofless.monitor._http import StatusServer, status_document
from spofless.monitor._live import LiveAnalysis, alerting_path, live_analysis
from spofless.monitor._probe import Observation, Target, http_client, probe, targets
from spofless.monitor._quorum import QuorumWatch
from spofless.monitor._receivers import Sender, group_notifications
from spofless.monitor._recorder import Recorder
from spofless.monitor._routes import HANDOVER_EVENTS, backup_alerts
from spofless.monitor._settings import MonitorSettings, dcs_settings
from spofless.monitor._starve import STARVED_FRACTION, Doubt, Starvation, watch_loop_lag
from spofless.monitor._state import LiveState
from spofless.monitor._switchover import switchover_keys, watch_requests
from spofless.monitor._vipwatch import claim_holders, handovers
from spofless.topology import LoadBalancerComponent, vip_claim_key

logger = logging.getLogger(__name__)

# Firing alerts already sent are looked up again this often, for `repeat_interval`.
REPEAT_CHECK = 30.0
# The latest events /status (and so the dashboard) lists.
RECENT_EVENTS = 50


@dataclass
class _Pending:
    note: Notification
    due: float
    claimed: int = 0  # the claim's revision once claimed
    send: bool = True
    repeat: bool = False  # sent and still firing: looked at again for repeat_interval


class Monitor:
    def __init__(self, settings: MonitorSettings, store: KeyValueStore | None = None) -> None:
        self.s = settings
        spec = settings.spec
        self.targets: list[Target] = [
            _with_token(t, settings) for t in targets(settings.topology) if t.name != settings.me
        ]
        self.state = LiveState(
            settings.topology,
            [t.name for t in self.targets],
            me=settings.me,
            fall=spec.fall,
            rise=spec.rise,
            damper=FlapDamper(spec.flap_window, spec.flap_count),
            max_lag=spec.max_lag,
        )
        self.store = store or EtcdStore(settings.etcd_urls, dcs_settings(settings))
        # Each postgres component's switchover key, on its own etcd (`_switchover`).
        self.switchover_keys = switchover_keys(settings.topology)
        self.claims = ClaimStore(
            self.store,
            settings.prefix,
            settings.me,
            claim_ttl=spec.claim_ttl,
            repeat_interval=spec.repeat_interval,
        )
        self.senders = [
            Sender(r, i, settings.topology.name, settings.me) for i, r in enumerate(spec.receivers)
        ]
        self.history = History(settings.history_path, spec.max_events)
        self.quorum = QuorumWatch(settings.me, settings.topology)
        self.baseline = live_analysis(settings.topology, (), spec.max_order)
        # The alerting path (the monitors and their etcd) has its own margin: a lost
        # monitor alerts before the last one is gone.
        self.path = alerting_path(settings.topology)
        self.path_baseline = (
            live_analysis(self.path, (), spec.max_order) if self.path is not None else None
        )
        self.live: LiveAnalysis | None = None
        self.book = AlertBook()
        self.alerts: dict[str, Alert] = {}
        self.redundancy: dict[str, Alert] = {}  # from the last analysis
        # Per alert, its notifications in order: a resolution waits for its firing to be
        # settled (sent, or found sent by another monitor), so none overtakes the other.
        self.pending: dict[str, list[_Pending]] = {}
        self.vip_holders: dict[str, str | None] = {}  # `lb` or `lb[region]` -> instance
        # Its own lateness: timeouts while it is late are doubted (`_starve`).
        self.starvation = Starvation(spec.probe_timeout * STARVED_FRACTION)
        self.doubt = Doubt()
        self.server = StatusServer(self)
        self.http = http_client(settings.etcd_tls)
        self.recorder = Recorder(self)
        self.last_look = 0.0
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self._wake = asyncio.Event()

    # -- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.server.start(self.s.listen_ip, self.s.listen_port)
        for sender in self.senders:
            sender.url = f"http://{self.s.listen_ip}:{self.server.port}/status"
        logger.info(
            "%s: watching %d instances of %s, status on %s:%d",
            self.s.me,
            len(self.targets),
            self.s.topology.name,
            self.s.listen_ip,
            self.server.port,
        )
        self._record(self._event("monitor_started", self.s.me, "info", f"{self.s.me} started"))
        delivery = asyncio.create_task(self._deliver_forever(stop))
        recording = asyncio.create_task(self.recorder.run(stop))
        lag = asyncio.create_task(watch_loop_lag(self.starvation, stop, self._starved))
        watches, stores = self._watch_switchovers()
        try:
            while not stop.is_set():
                started = time.monotonic()
                await self.look_once()
                left = self.s.spec.interval - (time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, left)):
                        await stop.wait()
        finally:
            for task in (delivery, recording, lag, *watches):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for store in stores:
                await store.close()
            await self.server.close()
            await self.http.aclose()
            await self.store.close()
            self.history.close()
            self.recorder.close()

    async def look_once(self) -> None:
        """Look at every instance once, fold the looks in, re-analyse on a change."""
        bound = self.s.spec.probe_timeout
        began = time.monotonic()
        looks = await asyncio.gather(*(self._look(t, bound) for t in self.targets))
        # How late the monitor itself was: the loop's lag while the round ran.
        lag = self.starvation.worst_since(began)
        now = time.time()
        self.last_look = now
        events: list[Event] = []
        for target, (obs, overrun) in zip(self.targets, looks, strict=True):
            believed = self.doubt.judge(target.name, obs, max(lag, overrun), bound)
            if believed is not None:  # None: unknown, looked at again next round
                events += self.state.observe(target.name, believed, now)
        events += self.state.settle(now)
        events += self.state.leaders_seen(now)
        events += self.quorum.update(self._quorum_states(), now)
        events += await self._vip_holders(now)
        for event in events:
            self._record(event)
        changed = bool(events)
        if self.state.complete:
            down = self.state.down()
            if (
                self.live is None
                or down != self.live.down
                or HANDOVER_EVENTS & {e.kind for e in events}
            ):
                self._analyse(down, now)
                changed = True
            elif events:
                self.update_alerts(now)  # a quorum level may have changed alone
        if changed:
            self.server.publish()

    async def _look(self, target: Target, bound: float) -> tuple[Observation, float]:
        """One look, and how much longer than its bound it took (a timer fires late
        when the monitor is late)."""
        began = time.monotonic()
        obs = await probe(target, bound, self.http)
        return obs, max(0.0, time.monotonic() - began - bound)

    def _starved(self, starved: bool, lag: float) -> None:
        if starved:
            text = (
                f"{self.s.me} is starved: its event loop ran {lag:.2f}s late; looks that "
                "time out meanwhile are unknown, not failures"
            )
            self._record(self._event("monitor_starved", self.s.me, "warning", text, lag=lag))
        else:
            text = f"{self.s.me} is no longer starved"
            self._record(self._event("monitor_starved_ended", self.s.me, "info", text))

    def _watch_switchovers(self) -> tuple[list[asyncio.Task[None]], list[KeyValueStore]]:
        """A task per postgres component watching its switchover key; the stores opened
        for components whose etcd is not the monitor's own."""
        tasks: list[asyncio.Task[None]] = []
        opened: list[KeyValueStore] = []
        for comp, (key, urls) in self.switchover_keys.items():
            store = self.store
            if tuple(urls) != self.s.etcd_urls:
                store = EtcdStore(urls, dcs_settings(self.s))
                opened.append(store)
            tasks.append(asyncio.create_task(watch_requests(comp, key, store, self.state.leaders)))
        return tasks, opened

    def _quorum_states(self) -> dict[str, str]:
        """Each instance's state for etcd's quorum: a flapping member counts as down, as it
        does for the analysis (its changes are not each an event)."""
        return {
            n: "flapping" if self.state.damper.flapping(n) else v.state
            for n, v in self.state.views.items()
        }

    def _analyse(self, down: frozenset[str], now: float) -> None:
        before = set(self.live.spofs) if self.live is not None else set()
        self.live = live_analysis(self.s.topology, down, self.s.spec.max_order)
        after = set(self.live.spofs)
        for spof in sorted(after - before):
            self._record(
                self._event("live_spof", spof, "error", f"{spof} is now a single point of failure")
            )
        for spof in sorted(before - after):
            self._record(
                self._event(
                    "live_spof_resolved",
                    spof,
                    "info",
                    f"{spof} is no longer a single point of failure",
                )
            )
        self.redundancy = redundancy_alerts(self.baseline, self.live, self.s.topology)
        if self.path is not None and self.path_baseline is not None:
            path_live = live_analysis(self.path, down, self.s.spec.max_order)
            told = {e for a in self.redundancy.values() for e in a.down}
            for key, alert in redundancy_alerts(self.path_baseline, path_live, self.path).items():
                # Only what the serving path's alerts do not already say (a lost etcd
                # member shrinks both: one alert).
                if not set(alert.down) <= told:
                    self.redundancy.setdefault(key, alert)
        self.update_alerts(now)

    def update_alerts(self, now: float) -> None:
        """Every alert the live state calls for, and the notifications their changes
        make: redundancy (from the last analysis), routes on backups, etcd quorum at
        risk, crash loops (from the supervisor's state file, `Recorder`)."""
        self.alerts = {
            **self.redundancy,
            **backup_alerts(self.state.views.values()),
            **self.quorum.alerts(),
            **self.recorder.crash.alerts(),
        }
        notes = self.book.update(self.alerts, now)
        for note in notes:
            a = note.alert
            severity: str
            if note.status == "firing":
                text, severity = f"alert: {a.summary}", a.severity
            else:
                text, severity = f"resolved: {_resolved(a)}", "info"
            self._record(
                self._event(f"alert_{note.status}", a.component, severity, text, margin=a.margin)
            )
            self._enqueue(_Pending(note, now + self.s.spec.group_wait))
        if notes:
            self._wake.set()

    async def _vip_holders(self, now: float) -> list[Event]:
        """Who holds each load balancer's floating address (per region with per-region
        addresses), from its claims in etcd: one prefix read per load balancer."""
        events: list[Event] = []
        for name, comp in self.s.topology.components.items():
            if not isinstance(comp, LoadBalancerComponent) or comp.vip is None:
                continue
            key = vip_claim_key(self.s.topology, name)
            try:
                found = await self.store.range(key, prefix=True)
            except DCSError:
                continue
            holders = claim_holders(name, comp.vip, key, found.kvs)
            for h in handovers(name, comp.vip, self.vip_holders, holders):
                data: dict[str, Any] = {"old": h.old, "new": h.new}
                if h.region is not None:
                    data["region"] = h.region
                events.append(self._event("vip_handover", name, "warning", h.text, **data))
            self.vip_holders.update(holders)
        return events

    # -- delivery ------------------------------------------------------------------

    async def _deliver_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the cycle, not after: a notification enqueued while it runs
            # wakes the next one at once instead of an interval later.
            self._wake.clear()
            try:
                await self.deliver_once()
            except DCSError as exc:
                logger.warning("%s: etcd unavailable, notifications wait: %s", self.s.me, exc)
            except Exception:
                # A bug must not silence alerting for good: logged, and the next cycle
                # tries again (what was pending stays pending).
                logger.exception("%s: delivery failed; retrying next cycle", self.s.me)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.s.spec.interval):
                    await self._wake.wait()

    async def deliver_once(self) -> None:
        """Claim what is due, send what was claimed (grouped), mark it sent."""
        now = time.time()
        claimed: list[_Pending] = []
        for key, queue in list(self.pending.items()):
            p = queue[0]
            if p.due > now:
                continue
            decision, revision = await self.claims.claim(p.note, now)
            if decision.verdict is Verdict.WAIT:
                continue
            if decision.verdict is Verdict.SKIP:
                self._settled(key, p, now)
                continue
            p.claimed, p.send = revision, decision.send
            if decision.send:
                claimed.append(p)
            else:
                await self.claims.mark_sent(p.note, revision, now)
                self._settled(key, p, now)
        if not claimed:
            return
        groups = group_notifications([p.note for p in claimed], self.s.spec.group_by)
        delivered = True
        for group in groups:
            results = await asyncio.gather(*(s.send(group) for s in self.senders))
            for sender, ok in zip(self.senders, results, strict=True):
                what = f"{group.status} {', '.join(n.alert.key for n in group.notes)}"
                if ok:
                    self._record(
                        self._event(
                            "notification_sent", sender.name, "info", f"{sender.name}: sent {what}"
                        )
                    )
                else:
                    delivered = False
                    self._record(
                        self._event(
                            "notification_failed",
                            sender.name,
                            "error",
                            f"{sender.name}: could not send {what}",
                        )
                    )
        done = time.time()
        for p in claimed:
            if delivered or not self.senders:
                if not await self.claims.mark_sent(p.note, p.claimed, done):
                    logger.warning(
                        "%s: %s was taken over while sending", self.s.me, p.note.alert.key
                    )
                self._settled(p.note.alert.key, p, done)
            else:
                # Left claimed: this or another monitor tries again once the claim expires.
                p.due = done + self.s.spec.claim_ttl

    def _enqueue(self, new: _Pending) -> None:
        queue = [p for p in self.pending.get(new.note.alert.key, []) if not p.repeat]
        last = queue[-1] if queue else None
        if last is not None and last.claimed == 0 and last.note.status == new.note.status:
            queue[-1] = new  # newer content of a notification nobody claimed yet
        else:
            queue.append(new)
        self.pending[new.note.alert.key] = queue

    def _settled(self, key: str, p: _Pending, now: float) -> None:
        queue = self.pending.get(key, [])
        if p.note.status == "firing" and queue == [p] and key in self.book.firing:
            # Still firing: looked at again for the repeat interval.
            p.repeat, p.claimed = True, 0
            p.due = now + min(REPEAT_CHECK, self.s.spec.repeat_interval)
            return
        if p in queue:
            queue.remove(p)
        if not queue:
            self.pending.pop(key, None)

    # -- records -------------------------------------------------------------------

    def _event(self, kind: str, subject: str, severity: str, message: str, **data: Any) -> Event:
        return Event(time.time(), self.s.me, kind, subject, severity, message, data)

    def _record(self, event: Event) -> None:
        logger.info("%s: %s", self.s.me, event.message)
        self.history.record(event)
        self.recent.append(event)
        self.server.publish()

    def status_json(self) -> dict[str, Any]:
        return status_document(self)


def _resolved(alert: Alert) -> str:
    if alert.alertname == "CrashLoop":
        return f"{alert.down[0].partition(':')[2]} runs without restarts again"
    if alert.alertname == "EtcdQuorumAtRisk":
        return f"{alert.component} can lose a member again and keep its quorum"
    return f"{alert.component} has its redundancy back"


def _with_token(target: Target, settings: MonitorSettings) -> Target:
    """A monitor of this group is looked at with the group's token."""
    if target.how == "monitor" and target.instance.component == settings.component:
        return dataclasses.replace(target, token=settings.token)
    return target


def run_monitor(settings: MonitorSettings) -> None:
    """Run one monitor until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Monitor(settings).run(stop)

    asyncio.run(main())
