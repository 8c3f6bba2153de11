"""The controller's health view: messages, `merge`, and the reload guard (pure, no processes)."""

from __future__ import annotations

import json

import pytest

from spofless.health import Status, Transition
from spofless.lb import settings_from_flags
from spofless.lb._controller import reload_refusal
from spofless.lb._messages import (
    AdminChange,
    BackendState,
    BackendStats,
    BackendView,
    Ejection,
    Message,
    Observation,
    Ready,
    Settings,
    Stats,
    Stop,
    View,
    decode,
    encode,
    merge,
    worker_view,
)
from spofless.lb._policy import OutlierPolicy
from spofless.lb._settings import LbSettings
from spofless.topology import LbOptions

POLICY = OutlierPolicy(failures=3, base=10.0, maximum=25.0)
FRESH = BackendView(last_change=0.0)


def test_a_transition_down_to_up_starts_slow_start() -> None:
    up = merge(FRESH, Transition(Status.DOWN, Status.UP, "2 passed"), 100.0, POLICY)
    assert up.up_since == 100.0 and up.last_change == 100.0


def test_a_first_transition_from_unknown_does_not_start_slow_start() -> None:
    up = merge(FRESH, Transition(Status.UNKNOWN, Status.UP, "passed"), 100.0, POLICY)
    assert up.up_since is None and up.last_change == 100.0
    down = merge(up, Transition(Status.UP, Status.DOWN, "refused"), 105.0, POLICY)
    assert down.up_since is None and down.last_change == 105.0


def test_ejections_double_up_to_the_maximum() -> None:
    v = merge(FRESH, Ejection("a", "status 502"), 100.0, POLICY)
    assert (v.ejections, v.ejected_until) == (1, 110.0)
    v = merge(v, Ejection("a", "status 502"), 120.0, POLICY)
    assert (v.ejections, v.ejected_until) == (2, 140.0)
    v = merge(v, Ejection("a", "status 502"), 150.0, POLICY)
    assert (v.ejections, v.ejected_until) == (3, 175.0)  # 40 s capped at 25


def test_an_ejection_while_ejected_changes_nothing() -> None:
    v = merge(FRESH, Ejection("a", "reset"), 100.0, POLICY)
    assert merge(v, Ejection("a", "reset"), 105.0, POLICY) is v


def test_an_admin_change_sets_the_admin_state_only() -> None:
    v = merge(FRESH, AdminChange("drain"), 100.0, POLICY)
    assert v.admin == "drain" and v.ejections == 0 and v.last_change == 0.0


def test_worker_view() -> None:
    views = {
        "a": merge(FRESH, Ejection("a", "x"), 100.0, POLICY),
        "b": BackendView(admin="disabled", up_since=50.0, last_change=0.0),
        "c": FRESH,
    }
    health = {"a": (Status.UP, 90.0), "b": (Status.DOWN, 95.0)}
    assert worker_view(views, health, 105.0) == {
        "a": BackendState("up", 90.0, "enabled", True, None),
        "b": BackendState("down", 95.0, "disabled", False, 50.0),
        "c": BackendState("unknown", 0.0, "enabled", False, None),  # no monitor
    }
    assert worker_view(views, health, 111.0)["a"].ejected is False


@pytest.mark.parametrize(
    "msg",
    [
        Settings({"instance": "lb/0"}, {"a": BackendState("up", 1.0, "enabled", False, 2.0)}),
        View({"a": BackendState("down", 1.0, "drain", True, None)}),
        Stop(),
        Ready(42),
        Stats(42, {"a": BackendStats(active=1, requests=5, latency_sum=0.5)}),
        Observation("a", ok=False, definite=True, detail="connection refused"),
        Ejection("a", "status 503"),
    ],
)
def test_messages_survive_the_channel(msg: Message) -> None:
    line = json.dumps(encode(msg))
    assert decode(json.loads(line)) == msg


def test_an_unknown_message_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown message kind 'nope'"):
        decode({"kind": "nope"})


def test_stats_add_counters_and_optionally_gauges() -> None:
    one = BackendStats(active=2, idle=1, requests=3, responses=[0, 0, 3, 0, 0, 0])
    total = BackendStats()
    total.add(one)
    total.add(one, gauges=False)  # a retired worker: its in-flight count is gone
    assert total.requests == 6 and total.responses[2] == 6
    assert total.active == 2 and total.idle == 1


def _settings(listen: str, backend: str = "127.0.0.1:9") -> LbSettings:
    return settings_from_flags(listen=listen, backends=[backend], options=LbOptions())


def test_reload_refuses_a_listen_host_change_on_the_same_port() -> None:
    refusal = reload_refusal(_settings("127.0.0.1:8080"), _settings("127.0.0.2:8080"), 8080)
    assert refusal is not None and "127.0.0.1 -> 127.0.0.2" in refusal


def test_reload_accepts_the_same_address_and_refuses_another_port() -> None:
    old = _settings("127.0.0.1:0")
    assert reload_refusal(old, _settings("127.0.0.1:0", "127.0.0.1:10"), 8080) is None
    assert reload_refusal(old, _settings("127.0.0.1:8080"), 8080) is None  # the bound port
    refusal = reload_refusal(old, _settings("127.0.0.1:9090"), 8080)
    assert refusal is not None and "port" in refusal
