"""The cache shard agent's rule (spofless.cache.decide): one case per line of its docstring."""

from __future__ import annotations

from spofless.cache.decide import Action, Member, View, best_candidate, decide


def member(name: str, role: str | None, offset: int = 0, fenced: bool = False) -> Member:
    port = 7000 + int(name[-1])
    return Member(name, "127.0.0.1", port, role, offset, fenced)  # type: ignore[arg-type]


A, B, C = "c-0", "c-1", "c-2"


def test_redis_not_running_is_started_as_a_replica_of_the_leader() -> None:
    d = decide(View(member(A, None), holds_lease=False, leader=member(B, "primary")))
    assert d.action is Action.START and "replica of c-1" in d.reason
    d = decide(View(member(A, None), holds_lease=False, leader=None))
    assert d.action is Action.START and "replica of nobody" in d.reason


def test_the_lease_holder_is_promoted_then_unfenced() -> None:
    assert decide(View(member(A, "replica"), True, member(A, "replica"))).action is Action.PROMOTE
    fenced = member(A, "primary", fenced=True)
    assert decide(View(fenced, True, fenced)).action is Action.UNFENCE
    serving = member(A, "primary")
    assert decide(View(serving, True, serving)).action is Action.NONE


def test_a_demoted_primary_follows_the_new_leader() -> None:
    leader = member(B, "primary")
    d = decide(View(member(A, "primary", 100), False, leader))
    assert d.action is Action.FOLLOW and d.target == leader


def test_a_replica_of_the_wrong_primary_follows_the_leader() -> None:
    leader = member(B, "primary")
    d = decide(View(member(A, "replica"), False, leader, replicating_from="127.0.0.1:7002"))
    assert d.action is Action.FOLLOW
    d = decide(View(member(A, "replica"), False, leader, replicating_from=leader.address))
    assert d.action is Action.NONE


def test_a_primary_without_the_lease_and_no_leader_is_fenced() -> None:
    d = decide(View(member(A, "primary", 50), False, None, peers=(member(B, "replica", 50),)))
    assert d.action is Action.FENCE


def test_only_the_member_with_most_of_the_stream_campaigns() -> None:
    peers = (member(B, "replica", 90), member(C, None, 500))  # C's Redis is down
    assert decide(View(member(A, "replica", 100), False, None, peers)).action is Action.CAMPAIGN
    d = decide(View(member(B, "replica", 90), False, None, (member(A, "replica", 100),)))
    assert d.action is Action.WAIT and "c-0" in d.reason


def test_a_tie_goes_to_the_lowest_name_and_a_fenced_primary_may_campaign() -> None:
    a, b = member(A, "replica", 10), member(B, "primary", 10, fenced=True)
    assert best_candidate((b, a)) == a
    assert decide(View(b, False, None, (a,))).action is Action.WAIT
    assert decide(View(b, False, None, ())).action is Action.CAMPAIGN
