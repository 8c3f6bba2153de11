"""Who holds each load balancer's floating address, from its claims in etcd.

    claim_holders(lb, spec, key, kvs) -> {slot: instance | None}
    handovers(lb, spec, before, after) -> [Handover]

The VIP agents of load balancer `lb` claim its address at `vip_claim_key(lb)`;
with per-region addresses (`vip: {addresses: {r1: ..., r2: ...}}`) each region's
agents claim theirs one level below, at `<key>/<region>` (spofless.vip). The
monitor reads the key and every key below it in one prefix range read and keeps
one holder per *slot*: `lb` for the one address, `lb[r1]`, `lb[r2]` per region.
A claim that is not `holding` (its holder is stepping down) is no holder. A
change of holder of a slot seen before is a hand-over (`vip_handover`, one per
region); the first holder seen is not. Pure: the key-values are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spofless.dcs import KeyValue
from spofless.topology import VipSpec


@dataclass(frozen=True, slots=True)
class Handover:
    slot: str  # `lb` or `lb[region]`
    region: str | None
    old: str | None
    new: str | None
    text: str


def slot_of(lb: str, region: str | None) -> str:
    return lb if region is None else f"{lb}[{region}]"


def claim_holders(
    lb: str, spec: VipSpec, key: str, kvs: Iterable[KeyValue]
) -> dict[str, str | None]:
    """Each slot's holder from the key-values read under `key` (a prefix read also
    returns keys of other load balancers whose name starts with this one's: ignored)."""
    from spofless.vip import Claim

    regions: list[str | None] = list(spec.addresses) if spec.addresses else [None]
    wanted = {(key if r is None else f"{key}/{r}"): r for r in regions}
    out: dict[str, str | None] = {slot_of(lb, r): None for r in regions}
    for kv in kvs:
        if kv.key not in wanted:
            continue
        claim = Claim.decode(kv.value, kv.create_revision, kv.mod_revision)
        if claim.state == "holding":
            out[slot_of(lb, wanted[kv.key])] = claim.instance
    return out


def handovers(
    lb: str, spec: VipSpec, before: dict[str, str | None], after: dict[str, str | None]
) -> list[Handover]:
    """The slots whose holder changed since `before` (a slot not in `before`: first
    seen, no hand-over)."""
    out = []
    regions: list[str | None] = list(spec.addresses) if spec.addresses else [None]
    for region in regions:
        slot = slot_of(lb, region)
        if slot not in before or slot not in after or before[slot] == after[slot]:
            continue
        old, new = before[slot], after[slot]
        where = "" if region is None else f" in {region}"
        text = f"{lb}: the VIP {spec.address_in(region)}{where} moved from {old} to {new}"
        out.append(Handover(slot, region, old, new, text))
    return out
