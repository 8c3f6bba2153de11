"""Balancing algorithms and data-plane policies, without sockets."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from spofless.lb import (
    ConsistentHash,
    LeastConnections,
    OutlierPolicy,
    RetryBudget,
    TwoChoices,
    WeightedRoundRobin,
    may_retry,
    slow_start_factor,
)


@dataclass
class C:
    name: str
    weight: float = 1.0
    active: int = 0


def test_round_robin_cycles_in_order() -> None:
    cs = [C("a"), C("b"), C("c")]
    rr = WeightedRoundRobin()
    assert [rr.pick(cs, None).name for _ in range(6)] == list("abcabc")  # type: ignore[union-attr]


def test_weighted_round_robin_is_smooth_and_proportional() -> None:
    cs = [C("a", 5), C("b", 1), C("c", 1)]
    rr = WeightedRoundRobin()
    picks = [rr.pick(cs, None).name for _ in range(7)]  # type: ignore[union-attr]
    assert Counter(picks) == {"a": 5, "b": 1, "c": 1}
    assert picks[:3] != ["a", "a", "a"]  # smooth: no bursts


def test_zero_weight_gets_nothing() -> None:
    cs = [C("a", 0), C("b", 1)]
    rr = WeightedRoundRobin()
    assert {rr.pick(cs, None).name for _ in range(5)} == {"b"}  # type: ignore[union-attr]
    assert WeightedRoundRobin().pick([C("a", 0)], None) is None


def test_least_connections_prefers_the_idle() -> None:
    cs = [C("a", active=3), C("b", active=0), C("c", active=1)]
    assert LeastConnections().pick(cs, None).name == "b"  # type: ignore[union-attr]
    cs2 = [C("a", weight=4, active=3), C("b", weight=1, active=1)]
    assert LeastConnections().pick(cs2, None).name == "a"  # type: ignore[union-attr]


def test_two_choices_never_picks_the_busiest_of_two() -> None:
    cs = [C("a", active=10), C("b", active=0)]
    tc = TwoChoices(random.Random(1))
    assert all(tc.pick(cs, None).name == "b" for _ in range(20))  # type: ignore[union-attr]


def test_consistent_hash_is_stable_and_moves_only_the_leavers_keys() -> None:
    cs = [C(f"n{i}") for i in range(5)]
    h = ConsistentHash(balance=100.0)
    keys = [f"k{i}".encode() for i in range(2000)]
    before = {k: h.pick(cs, k).name for k in keys}  # type: ignore[union-attr]
    assert before == {k: h.pick(cs, k).name for k in keys}  # type: ignore[union-attr]
    remaining = [c for c in cs if c.name != "n2"]
    after = {k: h.pick(remaining, k).name for k in keys}  # type: ignore[union-attr]
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == "n2" for k in moved)
    assert 200 < Counter(before.values())["n2"] < 700  # spread roughly evenly


def test_consistent_hash_bounded_load_spills_a_hot_key() -> None:
    cs = [C("a"), C("b"), C("c")]
    h = ConsistentHash(balance=1.25)
    owner = h.pick(cs, b"hot")
    assert owner is not None
    owner.active = 10  # far above 1.25 x average
    spill = h.pick(cs, b"hot")
    assert spill is not None and spill.name != owner.name


def test_retry_safety_rules() -> None:
    assert may_retry(b"POST", sent=False, response_started=False)  # connect failure
    assert not may_retry(b"POST", sent=True, response_started=False)  # may have reached it
    assert may_retry(b"GET", sent=True, response_started=False)
    assert may_retry(b"PUT", sent=True, response_started=False)
    assert not may_retry(b"GET", sent=True, response_started=True)


def test_retry_budget_caps_retries_to_a_share_of_traffic() -> None:
    budget = RetryBudget(0.2, window=10, min_retries=3)
    now = 100.0
    for _ in range(100):
        budget.record_request(now)
    spent = sum(budget.try_spend(now) for _ in range(100))
    assert spent == 20
    later = now + 11  # the window slid: only the minimum is left
    assert sum(budget.try_spend(later) for _ in range(10)) == 3


def test_ejection_time_doubles_up_to_the_maximum() -> None:
    p = OutlierPolicy(5, 1.0, 10.0)
    assert [p.ejection_time(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_slow_start_ramps_weight() -> None:
    assert slow_start_factor(None, 5.0, 10.0) == 1.0
    assert slow_start_factor(0.0, 0.0, 10.0) == 0.1
    assert slow_start_factor(0.0, 5.0, 10.0) == 0.5
    assert slow_start_factor(0.0, 20.0, 10.0) == 1.0
