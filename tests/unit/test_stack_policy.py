"""The supervisor's decisions: restart or not, backoff, crash loops, state transitions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spofless.stack._policy import (
    InstanceState,
    RestartPolicy,
    backoff_delay,
    decide_exit,
    describe_exit,
    on_health,
    on_running_without_check,
    on_spawned,
    on_stopped,
    uptime,
)

POLICY = RestartPolicy(
    backoff_initial=0.5, backoff_factor=2, backoff_max=4, fast_exit=10, crash_loop_exits=5
)


def test_a_first_spawn_is_starting_and_not_a_restart() -> None:
    s = on_spawned(InstanceState(), 7, 10.0, restart=False)
    assert (s.state, s.pid, s.started_at, s.restarts) == ("starting", 7, 10.0, 0)


def test_an_exit_after_a_long_run_restarts_after_the_initial_delay() -> None:
    s = on_spawned(InstanceState(), 7, 0.0, restart=False)
    new, d = decide_exit(s, -9, now=3600.0, policy=POLICY)
    assert d.restart and d.delay == 0.5
    assert new.state == "restarting" and new.pid is None and new.restart_at == 3600.5
    assert new.last_exit == "killed by SIGKILL" and new.fast_exits == 0
    assert "restarting in 0.5s" in d.reason


def test_fast_exits_double_the_delay_up_to_the_maximum() -> None:
    s = InstanceState()
    delays = []
    now = 0.0
    for _ in range(4):
        s = on_spawned(s, 7, now, restart=True)
        now += 1.0
        s, d = decide_exit(s, 1, now, POLICY)
        delays.append(d.delay)
        now += d.delay
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(10, POLICY) == 4.0  # capped


def test_the_nth_fast_exit_in_a_row_is_a_crash_loop_and_stops_restarts() -> None:
    s = InstanceState()
    for i in range(5):
        s = on_spawned(s, 7, float(i * 100), restart=i > 0)
        s, d = decide_exit(s, 3, float(i * 100) + 0.1, POLICY)
    assert not d.restart
    assert s.state == "failed" and s.pid is None
    assert "crash loop" in d.reason and "exit status 3" in d.reason
    assert s.message == d.reason  # shown by status, not hidden
    assert s.restarts == 4


def test_a_long_run_resets_the_fast_exit_count() -> None:
    s = InstanceState(fast_exits=4)
    s = on_spawned(s, 7, 0.0, restart=True)
    s, d = decide_exit(s, 1, 60.0, POLICY)
    assert d.restart and s.fast_exits == 0 and d.delay == 0.5


def test_restarts_count_each_respawn() -> None:
    s = on_spawned(InstanceState(), 1, 0.0, restart=False)
    s, _ = decide_exit(s, 1, 50.0, POLICY)
    s = on_spawned(s, 2, 51.0, restart=True)
    assert s.restarts == 1 and s.state == "starting" and s.restart_at is None


def test_health_moves_between_up_and_down_but_starting_is_not_down() -> None:
    s = on_spawned(InstanceState(), 1, 0.0, restart=False)
    s = on_health(s, False)
    assert (s.state, s.health) == ("starting", "unhealthy")
    s = on_health(s, True)
    assert (s.state, s.health) == ("up", "healthy")
    s = on_health(s, False)
    assert (s.state, s.health) == ("down", "unhealthy")
    assert on_health(s, True).state == "up"


def test_health_verdicts_do_not_revive_a_gone_process() -> None:
    s, _ = decide_exit(on_spawned(InstanceState(), 1, 0.0, False), 1, 50.0, POLICY)
    assert on_health(s, True) == s
    failed = InstanceState(state="failed")
    assert on_health(failed, True) == failed


def test_without_a_check_an_instance_is_up_once_running() -> None:
    s = on_running_without_check(on_spawned(InstanceState(), 1, 0.0, False))
    assert (s.state, s.health) == ("up", "none")


def test_stopped_keeps_the_exit_and_clears_the_pid() -> None:
    s = on_stopped(on_spawned(InstanceState(), 1, 0.0, False), "killed by SIGTERM")
    assert (s.state, s.pid, s.last_exit) == ("stopped", None, "killed by SIGTERM")
    assert uptime(s, 10.0) is None
    assert uptime(on_spawned(InstanceState(), 1, 4.0, False), 10.0) == 6.0


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(-200) == "killed by signal 200"


def test_inconsistent_backoff_is_rejected() -> None:
    with pytest.raises(ValidationError, match="backoff_max"):
        RestartPolicy(backoff_initial=5, backoff_max=1)
