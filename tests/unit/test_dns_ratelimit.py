"""Response rate limiting: token bucket per netblock, slip, memory bound."""

from __future__ import annotations

import ipaddress

from spofless.dns import ResponseRateLimiter, Verdict
from spofless.topology import DnsRateLimit

A = ipaddress.ip_address("192.0.2.1")
A_NEIGHBOUR = ipaddress.ip_address("192.0.2.200")
B = ipaddress.ip_address("198.51.100.1")


def test_a_burst_passes_then_limited_queries_slip_every_second() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=10, burst=5, slip=2))
    assert [rrl.check(A, 0.0)[0] for _ in range(5)] == [Verdict.ANSWER] * 5
    verdicts = [rrl.check(A, 0.0) for _ in range(4)]
    assert [v for v, _ in verdicts] == [Verdict.DROP, Verdict.SLIP, Verdict.DROP, Verdict.SLIP]
    assert [first for _, first in verdicts] == [True, False, False, False]
    assert (rrl.dropped, rrl.slipped) == (2, 2)
    # Another netblock has its own bucket; a neighbour in the same /24 shares A's.
    assert rrl.check(B, 0.0)[0] is Verdict.ANSWER
    assert rrl.check(A_NEIGHBOUR, 0.0)[0] is not Verdict.ANSWER


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=10, burst=5, slip=0))
    for _ in range(5):
        rrl.check(A, 0.0)
    assert rrl.check(A, 0.0)[0] is Verdict.DROP  # slip 0: drop everything over the limit
    assert rrl.check(A, 0.1)[0] is Verdict.ANSWER  # 0.1 s at 10/s: one token
    assert rrl.check(A, 0.1)[0] is Verdict.DROP
    verdicts = [rrl.check(A, 100.0) for _ in range(20)]
    assert sum(v is Verdict.ANSWER for v, _ in verdicts) == 5  # refills the burst, not more
    assert verdicts[5] == (Verdict.DROP, True)  # a new run of limiting is reported again


def test_a_clock_going_back_does_not_mint_tokens() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=10, burst=1, slip=0))
    assert rrl.check(A, 5.0)[0] is Verdict.ANSWER
    assert rrl.check(A, 1.0)[0] is Verdict.DROP


def test_slip_one_answers_every_limited_query_with_tc() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=1, burst=1, slip=1))
    rrl.check(A, 0.0)
    assert {rrl.check(A, 0.0)[0] for _ in range(5)} == {Verdict.SLIP}


def test_zero_rate_turns_limiting_off() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=0, burst=1))
    assert not rrl.enabled
    assert {rrl.check(A, 0.0)[0] for _ in range(1000)} == {Verdict.ANSWER}
    assert len(rrl) == 0


def test_ipv6_netblocks_and_their_prefix() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=1, burst=1, slip=0))
    one = ipaddress.ip_address("2001:db8:0:1::1")
    same_56 = ipaddress.ip_address("2001:db8:0:ff::2")
    other_56 = ipaddress.ip_address("2001:db8:0:100::1")
    assert rrl.check(one, 0.0)[0] is Verdict.ANSWER
    assert rrl.check(same_56, 0.0)[0] is Verdict.DROP
    assert rrl.check(other_56, 0.0)[0] is Verdict.ANSWER
    assert str(rrl.netblock(one)) == "2001:db8::/56"
    assert str(rrl.netblock(A)) == "192.0.2.0/24"


def test_memory_is_bounded_under_a_flood_of_forged_sources() -> None:
    rrl = ResponseRateLimiter(DnsRateLimit(responses_per_second=1, burst=2), max_blocks=1000)
    for i in range(20_000):
        rrl.check(ipaddress.ip_address(0x0A000000 + (i << 8)), i * 1e-6)
    assert len(rrl) <= 1000
