"""The up/down detector: fall, rise, definite failures, first result, forcing."""

from __future__ import annotations

import pytest

from spofless.health import Detector, Status


def test_first_result_decides_unknown() -> None:
    d = Detector(fall=3, rise=3)
    t = d.observe(True)
    assert t is not None and t.new is Status.UP and t.old is Status.UNKNOWN
    d2 = Detector(fall=3, rise=3)
    t2 = d2.observe(False, detail="timeout")
    assert t2 is not None and t2.new is Status.DOWN and "timeout" in t2.reason


def test_fall_consecutive_failures_mark_down() -> None:
    d = Detector(fall=3, rise=2, initial=Status.UP)
    assert d.observe(False) is None
    assert d.observe(False) is None
    t = d.observe(False)
    assert t is not None and t.new is Status.DOWN and "3 checks failed" in t.reason


def test_a_success_resets_the_failure_count() -> None:
    d = Detector(fall=2, rise=2, initial=Status.UP)
    d.observe(False)
    d.observe(True)
    assert d.observe(False) is None
    assert d.status is Status.UP


def test_rise_consecutive_successes_mark_up() -> None:
    d = Detector(fall=2, rise=3, initial=Status.DOWN)
    assert d.observe(True) is None
    assert d.observe(False) is None  # resets the success count
    assert d.observe(True) is None
    assert d.observe(True) is None
    t = d.observe(True)
    assert t is not None and t.new is Status.UP


def test_definite_failure_marks_down_at_once() -> None:
    d = Detector(fall=5, rise=2, initial=Status.UP)
    t = d.observe(False, definite=True, detail="connection refused")
    assert t is not None and t.new is Status.DOWN and "connection refused" in t.reason


def test_definite_down_can_be_turned_off() -> None:
    d = Detector(fall=2, rise=2, definite_down=False, initial=Status.UP)
    assert d.observe(False, definite=True) is None
    assert d.observe(False, definite=True) is not None


def test_down_stays_down_on_more_failures() -> None:
    d = Detector(fall=1, rise=1, initial=Status.DOWN)
    assert d.observe(False) is None
    assert d.status is Status.DOWN


def test_force_sets_status_and_reports_only_changes() -> None:
    d = Detector(initial=Status.UP)
    t = d.force(Status.DOWN, "ejected")
    assert t is not None and t.reason == "ejected"
    assert d.force(Status.DOWN, "again") is None


def test_invalid_counts_are_rejected() -> None:
    with pytest.raises(ValueError):
        Detector(fall=0)
