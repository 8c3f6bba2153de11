"""A starved monitor does not call healthy instances down (`spofless.monitor._starve`):
each case of the rule in its docstring, on plain observations."""

from __future__ import annotations

from spofless.health import Detector
from spofless.monitor import Observation
from spofless.monitor._starve import MAX_UNKNOWN, Doubt, Starvation

BOUND = 0.5
TIMEOUT = Observation(False, "down", "no answer within 0.5s", timed_out=True)
REFUSED = Observation(False, "down", "connection refused", definite=True)
ANSWERED_BAD = Observation(False, "down", "503")
UP = Observation(True, "up", "ok")


def test_a_timeout_while_the_monitor_was_late_is_unknown() -> None:
    doubt = Doubt()
    assert doubt.judge("web/0", TIMEOUT, late=2.5, bound=BOUND) is None
    assert doubt.unknown == {"web/0": 1} and doubt.total == 1


def test_a_timeout_while_the_monitor_was_on_time_is_a_failed_look() -> None:
    doubt = Doubt()
    assert doubt.judge("web/0", TIMEOUT, late=0.01, bound=BOUND) is TIMEOUT
    # The threshold is a fraction of the bound: 0.1 s of 0.5 s.
    assert doubt.judge("web/0", TIMEOUT, late=0.09, bound=BOUND) is TIMEOUT
    assert doubt.judge("web/0", TIMEOUT, late=0.1, bound=BOUND) is None


def test_refused_and_answers_are_believed_however_late_the_monitor_is() -> None:
    doubt = Doubt()
    assert doubt.judge("web/0", REFUSED, late=9.0, bound=BOUND) is REFUSED
    assert doubt.judge("web/0", ANSWERED_BAD, late=9.0, bound=BOUND) is ANSWERED_BAD
    assert doubt.judge("web/0", UP, late=9.0, bound=BOUND) is UP
    assert doubt.total == 0


def test_n_unknowns_in_a_row_count_as_down() -> None:
    doubt = Doubt()
    for _ in range(MAX_UNKNOWN - 1):
        assert doubt.judge("db/1", TIMEOUT, late=1.0, bound=BOUND) is None
    last = doubt.judge("db/1", TIMEOUT, late=1.0, bound=BOUND)
    assert last is not None and not last.ok and last.definite
    assert f"{MAX_UNKNOWN} looks in a row" in last.detail
    # Counting starts again: the next starved timeout is unknown again.
    assert doubt.judge("db/1", TIMEOUT, late=1.0, bound=BOUND) is None


def test_a_believed_look_restarts_the_count_and_counts_are_per_instance() -> None:
    doubt = Doubt(limit=3)
    assert doubt.judge("a/0", TIMEOUT, late=1.0, bound=BOUND) is None
    assert doubt.judge("a/0", TIMEOUT, late=1.0, bound=BOUND) is None
    assert doubt.judge("b/0", TIMEOUT, late=1.0, bound=BOUND) is None
    assert doubt.judge("a/0", UP, late=1.0, bound=BOUND) is UP
    assert doubt.judge("a/0", TIMEOUT, late=1.0, bound=BOUND) is None  # 1 again, not 3
    assert doubt.unknown == {"a/0": 1, "b/0": 1}


def test_with_fall_a_starved_round_leaves_an_up_instance_up() -> None:
    """The decision as the monitor folds it: an up instance whose looks time out
    while the monitor is late stays up; a refused one goes down in one look."""
    doubt, detector = Doubt(), Detector(fall=2, rise=2)
    detector.observe(True)
    for _ in range(MAX_UNKNOWN - 1):
        obs = doubt.judge("web/0", TIMEOUT, late=3.0, bound=BOUND)
        if obs is not None:
            detector.observe(obs.ok, definite=obs.definite)
    assert detector.status == "up"
    obs = doubt.judge("web/0", REFUSED, late=3.0, bound=BOUND)
    assert obs is not None
    detector.observe(obs.ok, definite=obs.definite)
    assert detector.status == "down"


def test_starved_starts_on_a_late_tick_and_ends_after_a_quiet_spell() -> None:
    s = Starvation(threshold=0.1, quiet=5.0)
    assert s.sample(0.01, 1.0) is None and not s.starved
    assert s.sample(3.0, 2.0) is True and s.starved and s.peak == 3.0
    assert s.sample(0.2, 3.0) is None and s.peak == 3.0  # still starved, worst kept
    assert s.sample(0.01, 7.0) is None and s.starved  # 4 s quiet: not yet
    assert s.sample(0.01, 8.0) is False and not s.starved and s.peak == 0.01
    assert s.worst_since(2.0) == 3.0 and s.worst_since(2.5) == 0.2 and s.worst_since(9) == 0


def test_refused_and_reset_are_definite_timeouts_are_marked() -> None:
    import httpx

    from spofless.monitor._probe import _nothing_listens

    assert _nothing_listens(ConnectionRefusedError())
    assert _nothing_listens(httpx.ConnectError("refused"))
    reset = httpx.ReadError("read failed")
    reset.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    assert _nothing_listens(reset)
    assert not _nothing_listens(httpx.ReadError("read failed"))  # no reset under it
    assert not _nothing_listens(OSError(113, "No route to host"))
