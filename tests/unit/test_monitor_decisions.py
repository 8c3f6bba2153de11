"""The monitor's pure core: live analysis, alerts and their severity, flapping, the claim rule."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from spofless.dcs import ManualClock, MemoryStore, RangeResult, TxnResult
from spofless.monitor import (
    AlertBook,
    ClaimRecord,
    ClaimStore,
    FlapDamper,
    Notification,
    Verdict,
    decide,
    live_analysis,
    redundancy_alerts,
    severity_of,
)
from spofless.topology import Topology, load_topology_text

SHOP = """\
name: shop
hosts:
  h1: {}
  h2: {}
  h3: {}
components:
  db: {kind: postgres, instances: [h1, h2], needs: [etcd], port: 5432}
  etcd: {kind: etcd, instances: [h1, h2, h3], min_up: majority, port: 2379, peer_port: 2479}
entry: [db]
"""


@pytest.fixture
def shop() -> Topology:
    return load_topology_text(SHOP)


def test_nothing_down_is_the_check_itself(shop: Topology) -> None:
    live = live_analysis(shop, ())
    assert live.spofs == ()
    assert live.margins["db"].failures == 2
    assert live.system_up


def test_a_lost_member_makes_the_others_live_spofs(shop: Topology) -> None:
    live = live_analysis(shop, {"instance:etcd/1"})
    # Instance indexes are the original ones, though the live model has two members.
    assert "instance:etcd/0" in live.spofs and "instance:etcd/2" in live.spofs
    assert "instance:etcd/1" not in live.spofs
    assert live.margins["db"].failures == 1
    assert 0 < live.availability < live_analysis(shop, ()).availability


def test_a_component_below_min_up_is_down_and_so_is_what_needs_it(shop: Topology) -> None:
    live = live_analysis(shop, {"instance:etcd/0", "instance:etcd/2"})
    assert live.down_components == ("etcd", "db")
    assert live.margins["db"].failures == 0
    assert live.availability == 0.0
    assert not live.system_up


def test_a_down_host_takes_its_instances(shop: Topology) -> None:
    live = live_analysis(shop, {"host:h3"})
    assert live.margins["db"].failures == 1
    assert set(live.spofs) >= {"host:h1", "host:h2"}


def test_the_alert_names_what_would_now_take_the_component_down(shop: Topology) -> None:
    base = live_analysis(shop, ())
    alerts = redundancy_alerts(base, live_analysis(shop, {"instance:etcd/1"}), shop)
    (alert,) = alerts.values()
    assert alert.severity == "error"
    assert alert.alertname == "RedundancyLost"
    assert alert.summary.startswith("etcd/1 is down: losing ")
    assert "etcd/0" in alert.summary and "etcd/2" in alert.summary
    assert alert.summary.endswith("now takes db down")
    assert redundancy_alerts(base, base, shop) == {}


def test_severity_comes_from_the_margin() -> None:
    assert [severity_of(m) for m in (0, 1, 2, 3)] == ["critical", "error", "warning", "warning"]


def test_margin_two_of_three_with_five_members() -> None:
    t = load_topology_text(
        "name: five\ncomponents:\n"
        "  etcd: {kind: etcd, instances: 5, min_up: majority}\nentry: [etcd]\n"
    )
    base = live_analysis(t, ())
    assert base.margins["etcd"].failures == 3
    live = live_analysis(t, {"instance:etcd/4"})
    (alert,) = redundancy_alerts(base, live, t).values()
    assert (alert.margin, alert.severity) == (2, "warning")
    assert "any of" in alert.summary


def test_alert_book_fires_changes_and_resolves(shop: Topology) -> None:
    base = live_analysis(shop, ())
    one = redundancy_alerts(base, live_analysis(shop, {"instance:etcd/1"}), shop)
    two = redundancy_alerts(base, live_analysis(shop, {"instance:etcd/1", "instance:db/0"}), shop)
    book = AlertBook()
    (first,) = book.update(one, 10.0)
    assert first.status == "firing"
    assert book.update(one, 11.0) == []
    (changed,) = book.update(two, 12.0)
    assert changed.status == "firing" and changed.starts_at == 10.0
    (resolved,) = book.update({}, 13.0)
    assert resolved.status == "resolved" and resolved.ends_at == 13.0


def test_flapping_is_reported_once_then_settles() -> None:
    damper = FlapDamper(window=10.0, count=3)
    verdicts = [damper.changed("etcd/1", t) for t in (0.0, 1.0, 2.0, 3.0)]
    assert [v.flapping for v in verdicts] == [False, False, True, True]
    assert [v.started for v in verdicts] == [False, False, True, False]
    assert verdicts[2].changes == 3
    assert damper.settled(12.0) == []
    assert damper.settled(13.0) == ["etcd/1"]
    assert not damper.flapping("etcd/1")
    # Changes spread wider than the window never flap.
    assert not any(damper.changed("db/0", t).flapping for t in (100.0, 111.0, 122.0, 133.0))


# -- the claim rule -------------------------------------------------------------


def _note(shop: Topology, status: str = "firing", changed_at: float = 10.0) -> Notification:
    base = live_analysis(shop, ())
    (alert,) = redundancy_alerts(base, live_analysis(shop, {"instance:etcd/1"}), shop).values()
    return Notification(status, alert, 10.0, changed_at)  # type: ignore[arg-type]


def _record(note: Notification, **kw: object) -> ClaimRecord:
    base = ClaimRecord(
        note.status, note.alert.fingerprint, note.changed_at, "monitor/1", 10.0, None
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _decide(record: ClaimRecord | None, note: Notification, now: float = 11.0) -> Verdict:
    return decide(record, note, "monitor/0", now, claim_ttl=5.0, repeat_interval=100.0).verdict


def test_claim_rule(shop: Topology) -> None:
    firing = _note(shop)
    resolved = _note(shop, "resolved", changed_at=20.0)
    assert _decide(None, firing) is Verdict.CLAIM
    assert _decide(None, resolved) is Verdict.SKIP  # never notified firing
    # Claimed by another monitor: wait while its claim lives, take it over when not.
    assert _decide(_record(firing), firing, now=12.0) is Verdict.WAIT
    assert _decide(_record(firing), firing, now=16.0) is Verdict.CLAIM
    # Sent: never again, until the repeat interval.
    sent = _record(firing, sent_at=10.5)
    assert _decide(sent, firing, now=50.0) is Verdict.SKIP
    assert _decide(sent, firing, now=111.0) is Verdict.CLAIM
    # The resolution of a sent firing is claimed; a late monitor's firing is stale.
    assert _decide(sent, resolved, now=21.0) is Verdict.CLAIM
    done = _record(resolved, sent_at=21.0, claimed_at=21.0)
    assert _decide(done, firing, now=22.0) is Verdict.SKIP
    assert _decide(done, resolved, now=22.0) is Verdict.SKIP
    # A resolution never overtakes a firing still being sent.
    assert _decide(_record(firing, claimed_at=20.5), resolved, now=21.0) is Verdict.WAIT
    # A firing that never went out is resolved without a message.
    expired = decide(
        _record(firing), resolved, "monitor/0", 30.0, claim_ttl=5.0, repeat_interval=100.0
    )
    assert (expired.verdict, expired.send) == (Verdict.CLAIM, False)


async def test_two_monitors_race_and_one_wins(shop: Topology) -> None:
    store = MemoryStore(clock=ManualClock())
    a = ClaimStore(store, "/p", "monitor/0", claim_ttl=5.0, repeat_interval=100.0)
    b = ClaimStore(store, "/p", "monitor/1", claim_ttl=5.0, repeat_interval=100.0)
    note = _note(shop)
    (da, ra) = await a.claim(note, 11.0)
    (db, rb) = await b.claim(note, 11.0)
    assert (da.verdict, db.verdict) == (Verdict.CLAIM, Verdict.WAIT)
    assert ra > 0 and rb == 0
    assert await a.mark_sent(note, ra, 11.5)
    assert (await b.claim(note, 12.0))[0].verdict is Verdict.SKIP
    # A claim taken over (a too-slow sender) is no longer markable by its first owner.
    slow = _note(shop, changed_at=30.0)
    slow = dataclasses.replace(slow, alert=dataclasses.replace(slow.alert, severity="critical"))
    (_, r1) = await a.claim(slow, 31.0)
    (d2, r2) = await b.claim(slow, 40.0)
    assert d2.verdict is Verdict.CLAIM and r2 > r1
    assert not await a.mark_sent(slow, r1, 41.0)


class CountingStore(MemoryStore):
    """A MemoryStore that counts the calls a claim makes (each one a round trip to etcd)."""

    def __init__(self) -> None:
        super().__init__(clock=ManualClock())
        self.calls: list[str] = []

    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        self.calls.append("range")
        return await super().range(key, prefix=prefix, revision=revision)

    async def txn(self, compare: Any, success: Any, failure: Any = ()) -> TxnResult:
        self.calls.append("txn")
        return await super().txn(compare, success, failure)


async def test_a_claim_is_one_round_trip_when_the_monitor_knows_the_record(
    shop: Topology,
) -> None:
    store = CountingStore()
    a = ClaimStore(store, "/p", "monitor/0", claim_ttl=5.0, repeat_interval=100.0)
    b = ClaimStore(store, "/p", "monitor/1", claim_ttl=5.0, repeat_interval=100.0)
    firing, resolved = _note(shop), _note(shop, "resolved", changed_at=20.0)
    (d, r) = await a.claim(firing, 11.0)  # a key never seen: claimed if still absent
    assert d.verdict is Verdict.CLAIM and store.calls == ["txn"]
    assert await a.mark_sent(firing, r, 11.5)
    store.calls.clear()
    # b guessed wrong (absent): its transaction reads the record instead; sent: skipped.
    assert (await b.claim(firing, 12.0))[0].verdict is Verdict.SKIP
    assert store.calls == ["txn"]
    store.calls.clear()
    (d, r) = await a.claim(resolved, 21.0)  # a wrote the record last: one transaction
    assert d.verdict is Verdict.CLAIM and store.calls == ["txn"]
    store.calls.clear()
    # b's record is stale (firing sent): its claim of the resolution fails the compare,
    # reads a's claim in the same call, and waits for it.
    assert (await b.claim(resolved, 21.5))[0].verdict is Verdict.WAIT
    assert store.calls == ["txn"]
    assert await a.mark_sent(resolved, r, 22.0)
    store.calls.clear()
    assert (await b.claim(resolved, 23.0))[0].verdict is Verdict.SKIP
    assert store.calls == ["range"]  # a guess that says "wait" is read again
