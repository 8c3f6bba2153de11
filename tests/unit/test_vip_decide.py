"""The VIP hand-over rule (spofless.vip): decide() and ClaimTracker, one test per case."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from spofless.topology import TopologyError, load_topology_text
from spofless.vip import Action, Claim, ClaimTracker, VipView, add_not_before, decide
from spofless.vip._address import garp_frames
from spofless.vip._decide import NEVER

HOLD, MARGIN = 0.25, 0.05


def view(**kw: object) -> VipView:
    base = VipView(
        me="lb/0",
        now=100.0,
        lb_healthy=True,
        address_present=False,
        leader=False,
        valid_until=NEVER,
        add_not_before=NEVER,
        claim=None,
        claim_first_seen=100.0,
        announce_at=NEVER,
        hold_time=HOLD,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def holder(**kw: object) -> VipView:
    mine = Claim("lb/0", "holding", 7, 9)
    base: dict[str, object] = {
        "leader": True,
        "valid_until": 100.2,
        "add_not_before": 99.0,
        "address_present": True,
        "claim": mine,
        "announce_at": 101.0,
    }
    return view(**{**base, **kw})


FOREIGN = Claim("lb/1", "holding", 5, 40)


# -- the holder ------------------------------------------------------------------------


def test_holder_with_a_fresh_claim_keeps_the_address() -> None:
    assert decide(holder()).action == Action.NOTHING


def test_holder_releases_when_its_load_balancer_fails() -> None:
    assert decide(holder(lb_healthy=False)).action == Action.RELEASE
    # also while still pending (no address yet): the key is freed for a healthy standby
    assert decide(holder(lb_healthy=False, address_present=False)).action == Action.RELEASE


def test_holder_removes_the_address_when_its_claim_lapses() -> None:
    """Rule 1: renewals failing (host cut off, etcd majority away) -> drop at s + hold."""
    d = decide(holder(now=100.2))
    assert d.action == Action.REMOVE and "lapsed" in d.reason


def test_lapsed_holder_without_the_address_waits_for_a_renewal() -> None:
    assert decide(holder(now=100.3, address_present=False)).action == Action.NOTHING


def test_agent_that_lost_leadership_removes_the_address() -> None:
    assert decide(holder(leader=False)).action == Action.REMOVE


def test_new_holder_waits_until_the_previous_holder_is_done() -> None:
    pending = holder(address_present=False, add_not_before=100.1)
    assert decide(pending).action == Action.NOTHING
    assert decide(dataclasses.replace(pending, now=100.1)).action == Action.ADD


def test_holder_announces_periodically() -> None:
    assert decide(holder(announce_at=100.0)).action == Action.ANNOUNCE


# -- the standby -----------------------------------------------------------------------


def test_standby_campaigns_when_there_is_no_claim() -> None:
    assert decide(view()).action == Action.CAMPAIGN


def test_standby_with_unhealthy_load_balancer_never_campaigns() -> None:
    assert decide(view(lb_healthy=False)).action == Action.NOTHING
    released = Claim("lb/1", "released", 5, 41)
    assert decide(view(lb_healthy=False, claim=released)).action == Action.NOTHING


def test_standby_waits_while_the_holder_renews() -> None:
    """Rule 5: a live claim is never taken, so a returning holder causes no second outage."""
    assert decide(view(claim=FOREIGN, claim_first_seen=99.9)).action == Action.NOTHING


def test_standby_deposes_a_claim_silent_for_hold_time() -> None:
    d = decide(view(claim=FOREIGN, claim_first_seen=100.0 - HOLD))
    assert d.action == Action.DEPOSE and "lb/1" in d.reason


def test_standby_takes_a_released_claim_at_once() -> None:
    released = Claim("lb/1", "released", 5, 41)
    assert decide(view(claim=released, claim_first_seen=100.0)).action == Action.DEPOSE


def test_standby_clears_its_own_claim_from_before_a_restart() -> None:
    old = Claim("lb/0", "holding", 3, 4)
    assert decide(view(claim=old, claim_first_seen=100.0)).action == Action.DEPOSE


def test_standby_holding_the_address_without_a_claim_removes_it_first() -> None:
    assert decide(view(address_present=True, claim=FOREIGN)).action == Action.REMOVE


# -- the tracker (rule 3) ----------------------------------------------------------------


def test_first_read_counts_as_a_sighting_even_when_the_key_is_missing() -> None:
    t = ClaimTracker("lb/0", started_at=10.0)
    t.observe_read(None, revision=50, now=10.5)
    assert t.foreign_seen_at == 10.5
    assert add_not_before(t, 10.6, HOLD, MARGIN) == pytest.approx(10.5 + HOLD + MARGIN)


def test_foreign_renewals_move_the_sighting_and_own_renewals_do_not() -> None:
    t = ClaimTracker("lb/0", started_at=0.0)
    t.observe_put(Claim("lb/1", "holding", 5, 60), now=1.0)
    t.observe_put(Claim("lb/1", "holding", 5, 61), now=1.05)
    assert t.foreign_seen_at == 1.05
    assert t.first_seen == 1.05
    t.observe_put(Claim("lb/0", "pending", 70, 70), now=2.0)
    assert t.foreign_seen_at == 1.05


def test_silence_is_measured_from_the_first_sighting_of_a_revision() -> None:
    t = ClaimTracker("lb/0", started_at=0.0)
    t.observe_put(Claim("lb/1", "holding", 5, 60), now=1.0)
    t.observe_read(Claim("lb/1", "holding", 5, 60), revision=60, now=1.2)
    assert t.first_seen == 1.0  # the holder has not renewed since 1.0
    assert t.foreign_seen_at == 1.2  # but safety counts from the latest sighting


def test_released_claim_lets_the_next_holder_add_at_once() -> None:
    t = ClaimTracker("lb/0", started_at=0.0)
    t.observe_put(Claim("lb/1", "holding", 5, 60), now=1.0)
    t.observe_put(Claim("lb/1", "released", 5, 61), now=1.1)
    t.observe_delete(62, now=1.12)
    assert add_not_before(t, 1.13, HOLD, MARGIN) == 1.13


def test_a_missing_key_found_by_a_read_is_not_trusted_after_a_gap() -> None:
    t = ClaimTracker("lb/0", started_at=0.0)
    t.observe_put(Claim("lb/1", "released", 5, 61), now=1.1)
    t.observe_read(None, revision=90, now=3.0)  # unknown history between 61 and 90
    assert add_not_before(t, 3.0, HOLD, MARGIN) == pytest.approx(3.0 + HOLD + MARGIN)


def test_stale_events_older_than_a_read_are_ignored() -> None:
    t = ClaimTracker("lb/0", started_at=0.0)
    t.observe_read(Claim("lb/1", "holding", 5, 70), revision=70, now=2.0)
    t.observe_put(Claim("lb/1", "released", 5, 65), now=2.1)  # late, older
    assert t.claim is not None and t.claim.state == "holding"
    assert t.foreign_seen_at == 2.0


def test_deposed_holder_is_done_before_the_new_one_adds() -> None:
    """Rule 2 + 3: the deposed holder's last renewal was seen at 1.0; it drops by 1.0+hold."""
    t = ClaimTracker("lb/0", started_at=0.0)
    t.observe_put(Claim("lb/1", "holding", 5, 60), now=1.0)
    assert decide(view(now=1.0 + HOLD, claim=t.claim, claim_first_seen=t.first_seen)).action == (
        Action.DEPOSE
    )
    t.observe_delete(61, now=1.0 + HOLD)  # our compare-and-delete at revision 60 succeeded
    assert add_not_before(t, 1.0 + HOLD + 0.01, HOLD, MARGIN) >= 1.0 + HOLD + MARGIN


def test_unreadable_claim_value_is_a_foreign_pending_claim() -> None:
    c = Claim.decode("garbage", 3, 4)
    assert (c.instance, c.state) == ("?", "pending")
    assert Claim.decode(Claim("lb/1", "holding").encode(), 3, 4).state == "holding"


# -- gratuitous ARP frames and the schema -------------------------------------------------


def test_garp_frames_are_broadcast_arp_for_the_address() -> None:
    import ipaddress

    mac = bytes.fromhex("020000000001")
    req, rep = garp_frames(mac, ipaddress.IPv4Address("10.77.255.1"))
    for frame, op in ((req, 1), (rep, 2)):
        assert len(frame) == 42
        assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
        assert frame[20:22] == op.to_bytes(2, "big")
        assert frame[28:32] == frame[38:42] == bytes([10, 77, 255, 1])


VIP_TOPOLOGY = """
name: viptest
hosts: {a: {}, b: {}}
components:
  etcd: {kind: etcd, instances: [a, b, a], port: 2379}
  app: {kind: service, instances: [a, b], port: 8000}
  lb:
    kind: load_balancer
    instances: %s
    port: 80
    routes: [{to: app}]
    vip: %s
entry: [lb]
"""


def test_vip_needs_two_instances() -> None:
    with pytest.raises(TopologyError, match="at least 2"):
        load_topology_text(VIP_TOPOLOGY % ("[a]", "{address: 10.77.255.1/16}"))


@pytest.mark.parametrize(
    ("vip", "message"),
    [
        ("{address: 10.77.255.1/33}", "IPv4"),
        ("{address: 127.0.0.5}", "cannot float"),
        ("{address: 10.77.255.1, hold_time: 0.1, heartbeat_interval: 0.05}", "3 x"),
        ("{address: 10.77.255.1, hold_time: 2.5}", "lease_ttl"),
        ("{address: 10.77.255.1, bogus: 1}", "bogus"),
    ],
)
def test_bad_vip_settings_are_rejected_with_a_reason(vip: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        load_topology_text(VIP_TOPOLOGY % ("[a, b]", vip))


def test_vip_settings_finds_etcd_and_the_load_balancer(tmp_path: Path) -> None:
    from spofless.security import init_secrets
    from spofless.topology import CannotRunError, load_topology
    from spofless.vip import vip_settings

    f = tmp_path / "viptest.yaml"
    f.write_text(VIP_TOPOLOGY % ("[a, b]", "{address: 10.77.255.1/16}"))
    with pytest.raises(CannotRunError, match="spofless secrets init"):
        vip_settings(load_topology(f), "lb", 1)  # etcd's client certificate is missing
    init_secrets(load_topology(f))
    topo = load_topology(f)
    cfg = vip_settings(topo, "lb", 1)
    assert cfg.instance == "lb/1"
    assert cfg.key == "/spofless/viptest/vip/lb"
    assert len(cfg.endpoints) == 3 and cfg.endpoints[0].startswith("https://")
    tls = cfg.dcs_settings().tls  # the agent presents the topology's client certificate
    assert tls is not None and tls.cert.name == "spofless.crt" and tls.cert.exists()
    plain = load_topology_text(
        VIP_TOPOLOGY % ("[a, b]", "{address: 10.77.255.1/16}") + "security: {tls: false}\n"
    )
    plain_cfg = vip_settings(plain, "lb", 1)
    assert plain_cfg.endpoints[0].startswith("http://") and plain_cfg.dcs_settings().tls is None
    assert cfg.lb_port == 80  # every instance of a VIP's load balancer serves one port
    assert str(cfg.address) == "10.77.255.1/16"
