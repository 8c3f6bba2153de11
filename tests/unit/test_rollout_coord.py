"""What a supervisor does about the rollout keys in etcd: pure decisions, and the records."""

from __future__ import annotations

from spofless.stack._coord import (
    AgentView,
    ReplaceRequest,
    ReplaceResult,
    RolloutRecord,
    decide,
)


def _view(**kw: object) -> AgentView:
    base: dict[str, object] = {
        "mine": frozenset({"web/0", "web/2"}),
        "lock_token": 40,
        "record": RolloutRecord(1, "web", 0.0, 4, host="a", phase="replacing"),
        "requests": (),
        "results": {},
    }
    base.update(kw)
    return AgentView(**base)  # type: ignore[arg-type]


def test_a_supervisor_carries_out_a_live_request_for_its_own_instance_once() -> None:
    req = ReplaceRequest("r1", "web/0", ("app", "--v2"), 40)
    other = ReplaceRequest("r2", "web/1", None, 40)
    d = decide(_view(requests=(req, other)))
    assert d.carry_out == (req,) and not d.abort
    assert "replace web/0" in d.reason
    # Done already (by this supervisor, or a result with its id exists): not again.
    assert decide(_view(requests=(req,), done=frozenset({"r1"}))).carry_out == ()
    assert decide(_view(requests=(req,), results={"web/0": "r1"})).carry_out == ()
    # A result of an earlier request does not count for this one.
    assert decide(_view(requests=(req,), results={"web/0": "r0"})).carry_out == (req,)


def test_a_request_of_a_rollout_that_lost_its_lock_is_never_carried_out() -> None:
    req = ReplaceRequest("r1", "web/0", None, 40)
    assert decide(_view(requests=(req,), lock_token=55)).carry_out == ()  # a newer rollout
    d = decide(_view(requests=(req,), lock_token=0))
    assert d.carry_out == () and "ignore the requests" in d.reason


def test_an_unfinished_rollout_without_its_lock_is_aborted() -> None:
    record = RolloutRecord(7, "web", 0.0, 4, host="m1", phase="replacing", drained=["web/1"])
    d = decide(_view(lock_token=0, record=record))
    assert d.abort
    assert "lost its driver (m1 pid 7)" in d.reason and "readmit web/1" in d.reason
    assert not decide(_view(lock_token=40, record=record)).abort  # its driver lives
    done = RolloutRecord(7, "web", 0.0, 4, phase="done")
    assert not decide(_view(lock_token=0, record=done)).abort
    assert not decide(_view(lock_token=0, record=None)).abort


def test_records_requests_and_results_round_trip_and_refuse_garbage() -> None:
    record = RolloutRecord(7, "web", 1.0, 4, host="m1", drained=["web/1"], surge=["web/4"])
    back = RolloutRecord.from_json(record.to_json())
    assert back is not None and back.drained == ["web/1"] and back.surge == ["web/4"]
    # A record written by a newer version (a field this one does not know) still reads.
    assert RolloutRecord.from_json(record.to_json()[:-2] + ', "later": 1\n}') is not None
    assert RolloutRecord.from_json("not json") is None
    req = ReplaceRequest.new("web/0", ("a", "b"), 9, "a {port}")
    assert ReplaceRequest.from_json(req.to_json()) == req
    assert (
        ReplaceRequest.from_json('{"id": 1, "instance": "w/0", "argv": [""], "token": 1}') is None
    )
    res = ReplaceResult("x", True, 12, ("a",), supervisor="s")
    assert ReplaceResult.from_json(res.to_json()) == res
    assert ReplaceResult.from_json("[]") is None
    assert "m1 pid 7" in record.describe(True)


def test_a_surge_request_goes_to_the_supervisor_of_its_host() -> None:
    req = ReplaceRequest.new("web/4", None, 40, "app {port}", op="surge", host="h3")
    assert decide(_view(requests=(req,), hosts=frozenset({"h3"}))).carry_out == (req,)
    assert decide(_view(requests=(req,), hosts=frozenset({"h1", "h2"}))).carry_out == ()
    assert decide(_view(requests=(req,), hosts=None)).carry_out == (req,)  # runs every host
    d = decide(_view(requests=(req,), hosts=frozenset({"h3"}), lock_token=55))
    assert d.carry_out == ()  # its rollout is gone
    # Its removal goes to the supervisor that runs it.
    out = ReplaceRequest.new("web/4", None, 40, op="unsurge")
    assert decide(_view(requests=(out,), mine=frozenset({"web/4"}))).carry_out == (out,)
    assert decide(_view(requests=(out,), mine=frozenset({"web/0"}))).carry_out == ()


def test_temporary_instances_of_a_rollout_that_ended_are_removed() -> None:
    mine = {"web/4": 40, "web/5": 31}
    d = decide(_view(temporaries=mine, lock_token=40))
    assert d.reap == ("web/5",) and "remove web/5" in d.reason
    assert decide(_view(temporaries=mine, lock_token=0)).reap == ("web/4", "web/5")
    assert decide(_view(temporaries={}, lock_token=0, record=None)).reap == ()


def test_surge_requests_and_results_round_trip() -> None:
    req = ReplaceRequest.new("web/4", None, 9, "a {port}", op="surge", host="h3")
    assert ReplaceRequest.from_json(req.to_json()) == req
    bad = req.to_json().replace('"surge"', '"explode"')
    assert ReplaceRequest.from_json(bad) is None
    res = ReplaceResult("x", True, 12, supervisor="s", address="10.0.0.3:41234")
    assert ReplaceResult.from_json(res.to_json()) == res
