"""The agent's HTTP API: the pure router (the socket is tested in tests/integration)."""

from __future__ import annotations

import pytest

from spofless.pg import Role
from spofless.pg.api import ApiSnapshot, MemberStatus, parse_bytes, route

LEADER = MemberStatus("a", running=True, role=Role.PRIMARY, leader=True, timeline=2)
REPLICA = MemberStatus("b", running=True, role=Role.REPLICA, streaming=True, lag=1000)


def snap(me: MemberStatus) -> ApiSnapshot:
    return ApiSnapshot(me=me, members=(LEADER, REPLICA), leader="a")


def test_primary_only_on_the_writable_leader() -> None:
    assert route("GET", "/primary", snap(LEADER)).status == 200
    assert route("GET", "/primary", snap(REPLICA)).status == 503
    # A primary without the lease is about to demote: never advertise it.
    no_lease = MemberStatus("a", running=True, role=Role.PRIMARY, leader=False)
    assert route("GET", "/primary", snap(no_lease)).status == 503
    stopped = MemberStatus("a", running=False, role=None, leader=True)
    assert route("GET", "/primary", snap(stopped)).status == 503


def test_replica_only_when_streaming_and_within_lag() -> None:
    assert route("GET", "/replica", snap(REPLICA)).status == 200
    assert route("GET", "/replica?lag=1000", snap(REPLICA)).status == 200
    assert route("GET", "/replica?lag=999", snap(REPLICA)).status == 503
    assert route("GET", "/replica?lag=1kB", snap(REPLICA)).status == 200
    assert route("GET", "/replica", snap(LEADER)).status == 503
    not_streaming = MemberStatus("b", running=True, role=Role.REPLICA, streaming=False)
    assert route("GET", "/replica", snap(not_streaming)).status == 503


def test_unknown_lag_fails_a_lag_bound() -> None:
    me = MemberStatus("b", running=True, role=Role.REPLICA, streaming=True, lag=None)
    assert route("GET", "/replica?lag=1MB", snap(me)).status == 503


def test_bad_lag_is_a_400() -> None:
    r = route("GET", "/replica?lag=lots", snap(REPLICA))
    assert r.status == 400 and "lots" in r.body["error"]


def test_health_cluster_status_and_errors() -> None:
    assert route("GET", "/health", snap(REPLICA)).status == 200
    assert route("GET", "/health", snap(MemberStatus("c"))).status == 503
    cluster = route("GET", "/cluster", snap(REPLICA))
    assert cluster.status == 200 and cluster.body["leader"] == "a"
    assert [m["role"] for m in cluster.body["members"]] == ["primary", "replica"]
    assert route("GET", "/status", snap(REPLICA)).body["name"] == "b"
    assert route("GET", "/nope", snap(REPLICA)).status == 404
    assert route("POST", "/primary", snap(LEADER)).status == 405


@pytest.mark.parametrize(("text", "n"), [("10", 10), ("10MB", 10 * 1024**2), ("2kb", 2048)])
def test_parse_bytes(text: str, n: int) -> None:
    assert parse_bytes(text) == n


def test_degraded_synchronous_mode_shows_in_status_cluster_and_metrics() -> None:
    degraded = ApiSnapshot(me=LEADER, members=(LEADER,), leader="a", degraded=True)
    status = route("GET", "/status", degraded).body
    cluster = route("GET", "/cluster", degraded).body
    assert isinstance(status, dict) and status["degraded"] is True
    assert isinstance(cluster, dict) and cluster["degraded"] is True
    metrics = route("GET", "/metrics", degraded)
    assert metrics.status == 200 and isinstance(metrics.body, str)
    assert 'spofless_pg_synchronous_degraded{member="a"} 1' in metrics.body
    assert 'spofless_pg_leader{member="a"} 1' in metrics.body
    healthy = route("GET", "/metrics", snap(LEADER)).body
    assert isinstance(healthy, str)
    assert 'spofless_pg_synchronous_degraded{member="a"} 0' in healthy
    assert 'spofless_pg_timeline{member="a"} 2' in healthy


def test_a_replica_that_runs_but_does_not_stream_is_not_healthy() -> None:
    stuck = MemberStatus(
        "b",
        running=True,
        role=Role.REPLICA,
        streaming=False,
        state="not streaming",
        not_streaming_for=12.0,
        reason="replica of a, not streaming for 12s",
    )
    assert route("GET", "/health", snap(stuck)).status == 503
    assert route("GET", "/replica", snap(stuck)).status == 503
    text = str(route("GET", "/metrics", snap(stuck)).body)
    assert 'spofless_pg_healthy{member="b"} 0' in text
    assert 'spofless_pg_not_streaming_seconds{member="b"} 12' in text
    body = route("GET", "/status", snap(stuck)).body
    assert body["state"] == "not streaming" and "12s" in body["reason"]


def test_a_failed_member_is_not_healthy_even_when_running() -> None:
    failed = MemberStatus(
        "b", running=True, role=Role.REPLICA, streaming=True, state="failed", reason="kept out"
    )
    assert route("GET", "/health", snap(failed)).status == 503
    assert 'spofless_pg_failed{member="b"} 1' in str(route("GET", "/metrics", snap(failed)).body)
    assert route("GET", "/health", snap(LEADER)).status == 200


def test_member_status_from_json_is_the_one_parser() -> None:
    import pytest

    from spofless.pg.api import MemberStatus
    from spofless.pg.view import Role

    m = MemberStatus(name="db-1", running=True, role=Role.REPLICA, streaming=True, lag=0)
    assert MemberStatus.from_json({**m.to_json(), "added_by_a_newer_agent": 1}) == m
    for bad in ({"running": True}, {"name": "db-1", "role": "leader"}, ["db-1"]):
        with pytest.raises(ValueError):
            MemberStatus.from_json(bad)  # type: ignore[arg-type]
