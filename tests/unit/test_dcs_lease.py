"""LeaderLease: what the holder may assume, from timestamps only."""

from __future__ import annotations

import pytest

from spofless.dcs import DCSSettings, LeaderLease

S = DCSSettings(ttl=5, renew_interval=1, retry_timeout=1, request_timeout=0.5, safety_margin=1)


def test_held_until_ttl_minus_margin_after_grant_was_sent() -> None:
    lease = LeaderLease(S, granted_sent_at=100.0, granted_ttl=5)
    assert lease.valid_until == 104.0
    assert lease.held(103.99)
    assert not lease.held(104.0)
    reason = lease.lost_reason(104.0)
    assert reason is not None and "no successful renewal for 4.00s" in reason


def test_renewal_counts_from_its_send_time_not_its_answer() -> None:
    lease = LeaderLease(S, 100.0, 5)
    lease.renewed(sent_at=101.0, ttl=5)  # answered much later: irrelevant
    assert lease.valid_until == 105.0
    # An older renewal answered late never moves the deadline back.
    lease.renewed(sent_at=100.5, ttl=5)
    assert lease.valid_until == 105.0


def test_store_ttl_longer_than_asked_is_not_trusted_shorter_is() -> None:
    lease = LeaderLease(S, 0.0, granted_ttl=60)
    assert lease.valid_until == 4.0
    lease.renewed(sent_at=1.0, ttl=2)
    assert lease.valid_until == 4.0  # max(4, 1 + 2 - 1)


def test_renew_schedule_and_retry_after_failure() -> None:
    lease = LeaderLease(S, 0.0, 5)
    assert lease.next_renewal_at() == 1.0
    lease.renewal_failed(2.0)
    assert lease.next_renewal_at() == pytest.approx(2.1)
    lease.renewed(sent_at=2.1, ttl=5)
    assert lease.next_renewal_at() == pytest.approx(3.1)


def test_attempt_timeout_never_outlives_the_lease() -> None:
    lease = LeaderLease(S, 0.0, 5)
    assert lease.attempt_timeout(1.0) == 1.0  # retry_timeout
    assert lease.attempt_timeout(3.5) == 0.5  # only 0.5 s of validity left
    assert lease.attempt_timeout(9.0) == 0.0


def test_two_failed_renewals_still_leave_time_for_a_third() -> None:
    # The invariant renew_interval + 2 x retry_timeout <= ttl - margin, played out.
    lease = LeaderLease(S, 0.0, 5)
    t = lease.next_renewal_at()
    for _ in range(2):
        t += lease.attempt_timeout(t)  # the attempt uses its whole budget and fails
        lease.renewal_failed(t)
        t = lease.next_renewal_at()
    assert lease.held(t)


def test_zero_ttl_and_end_are_final() -> None:
    lease = LeaderLease(S, 0.0, 5)
    lease.renewed(sent_at=1.0, ttl=0)
    assert not lease.held(1.0)
    assert lease.ended == "the lease expired on the store"
    lease.renewed(sent_at=2.0, ttl=5)
    assert not lease.held(2.0)
    other = LeaderLease(S, 0.0, 5)
    other.end("resigned")
    other.end("later reason")
    assert other.lost_reason(0.0) == "resigned"
