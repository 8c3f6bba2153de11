"""Who holds a floating address, as `status` shows it: from the claim in etcd (pure)."""

from __future__ import annotations

from spofless.stack._vip import ClaimView, vip_roles


def test_vip_roles_from_the_claim() -> None:
    assert vip_roles(None, "lb", [0, 1]) == {"lb-vip/0": "standby", "lb-vip/1": "standby"}
    assert vip_roles(ClaimView("lb/1", "holding"), "lb", [0, 1]) == {
        "lb-vip/0": "standby",
        "lb-vip/1": "holder",
        "lb/1": "vip-holder",
    }
    assert vip_roles(ClaimView("lb/0", "pending"), "lb", [0, 1])["lb-vip/0"] == "pending"
    assert "lb/0" not in vip_roles(ClaimView("lb/0", "released"), "lb", [0, 1])
