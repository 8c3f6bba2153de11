"""The floating virtual IP: one address, held by exactly one load balancer instance.

    vip_settings(topology, component, index) -> VipSettings
    VipAgent(config).run()          one agent beside each load balancer instance
    decide(VipView) -> Decision     the hand-over rule, pure
    ClaimTracker                    what an agent knows of the claim in etcd, pure

Who may hold the address is decided by etcd alone. Peers never talk to each
other directly: the heartbeat *is* the claim in etcd, renewed every
`heartbeat_interval`, so "the peers cannot see each other but both see etcd"
is the normal case, not a special one. A direct heartbeat could not let a
standby act before etcd agrees anyway; what makes takeover sub-second is the
claim's own short validity (`hold_time`, 0.25 s), far under etcd's lease.

The claim is one key, `/spofless/<topology>/vip/<component>`, attached to an etcd
lease (`lease_ttl`, 2 s, only to clean up after a holder that vanished with no
standby left). Its value names the instance and a state: `pending` (elected,
address not yet added), `holding`, `released` (address removed, for good under
this claim). Its create revision is the fencing token.

With one address per region (`vip: {addresses: {region: address}}`) each region is
one such election of its own: the instances in region R claim
`/spofless/<topology>/vip/<component>/R` for R's address, and everything below holds
within each region. A region whose instances are all down, or cut from etcd's
majority, has no holder; DNS then answers its clients with another region's address
(spofless.dns).

The rule
--------
1. A holder is entitled to the address until `s + hold_time`, where `s` is when
   it *sent* the last renewal of its claim that succeeded (a transaction that
   compares the fencing token). It removes the address by then, and so does
   its guard process (spofless.vip._guard) if the agent is stopped or stuck.
2. A standby whose own load balancer is healthy may depose a claim whose latest
   revision it first saw `hold_time` ago or more, by deleting the key only if its
   mod revision is still that one (compare-and-delete), then create the key. If
   the holder renewed meanwhile, the delete fails and nothing happens. So the
   deposed holder's last successful renewal is the revision the standby saw,
   sent before the standby saw it: by rule 1 the holder has dropped the
   address `hold_time` after that sighting.
3. A new holder adds the address no earlier than `hold_time + takeover_margin`
   after the last time it saw evidence that another claim may entitle someone
   (a renewal of another instance's claim, or a read whose history it has not
   seen in full, such as its first). A claim marked `released` is no such
   evidence: its holder removed the address before writing it, and had added
   it only after every earlier holder was done. The margin covers timer
   lateness and clock-rate drift between the two hosts; no clock is compared
   across hosts.
4. A holder whose load balancer fails its check releases: it removes the
   address, marks the claim released, then deletes the key and revokes its
   lease. A standby sees the release and takes over at once (rule 3 lets it
   add without waiting).
5. A holder that comes back never takes the address back: a standby stays
   standby while a live claim exists (no second outage).
6. The holder announces the address with gratuitous ARP (request and reply): a
   burst of `garp_count` when it adds it, then one every `garp_refresh`, so a
   neighbour behind a healed partition learns the holder within a second.

Failure cases (each tested in tests/unit/test_vip_decide.py and, for real, in
tests/integration/test_vip_lab.py)
----------------------------------
- The holder's load balancer dies: released by rule 4; outage = the check's
  detection (a refused connection counts at once) plus two etcd round trips.
- The holder's host is cut off, or dies: its renewals fail; it drops the
  address at `s + hold_time` (rule 1, if it is alive); a standby deposes the
  claim `hold_time` after its last renewal and adds the address `takeover_margin`
  later. Outage about hold_time + margin + heartbeat_interval (about 0.35 s).
- etcd's majority is cut away from the holder (it still sees a minority
  member, or none): a minority member refuses writes, so renewals fail and the
  holder drops the address by rule 1; the standby on the majority side takes
  over by rule 2. Never two holders: the holder's drop does not depend on
  hearing from anyone.
- The holder and the standby cannot see each other but both see etcd: nothing
  happens; they never needed to see each other.
- Neither sees etcd (etcd down, or both cut from its majority): the holder drops
  the address after hold_time and nobody takes it: etcd decides, and it cannot.
  The address comes back as soon as etcd does.
- kill -9 of the agent on the holder: its guard sees its stdin close and removes
  the address within milliseconds; a standby takes over by rule 2 within about
  0.35 s. A restarted agent removes the address before anything else and
  clears its own old claim.
- The agent is stopped (SIGSTOP) or starved: the guard removes the address at the
  deadline the agent armed it with, exactly as rule 1 would have.
- The whole holder host is frozen (every process stopped) while its kernel keeps
  the address: the standby takes over after hold_time and its gratuitous ARP
  moves the neighbours; the frozen host's kernel may still answer an ARP
  request until it thaws, when the agent drops the address at once. Only
  fencing the host (power off) closes this window; no address protocol can.
- A partition heals: the cut-off holder dropped the address when its renewals
  failed; it finds another instance's live claim and stays standby (rule 5).
  The holder's periodic gratuitous ARP refreshes any stale neighbour.
- The standby's watch is stuck on a silent etcd member: its compare-and-delete
  goes to a live member and fails if the holder renewed, teaching it the
  current revision; at worst a takeover is one hold_time late, never early.
- The holder's etcd renewals are merely slow (a loaded etcd): a renewal slower
  than hold_time costs an address drop and a takeover: choose hold_time well
  above etcd's write latency at its worst (fsync included).
"""

from spofless.vip._agent import VipAgent, run_vip
from spofless.vip._decide import (
    Action,
    Claim,
    ClaimTracker,
    Decision,
    VipView,
    add_not_before,
    decide,
)
from spofless.vip._errors import VipError
from spofless.vip._settings import VipSettings, vip_settings

__all__ = [
    "Action",
    "Claim",
    "ClaimTracker",
    "Decision",
    "VipAgent",
    "VipError",
    "VipSettings",
    "VipView",
    "add_not_before",
    "decide",
    "run_vip",
    "vip_settings",
]
