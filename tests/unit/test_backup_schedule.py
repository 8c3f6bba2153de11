"""Cron schedules (seconds too), staleness of the newest backup, when a drill is due."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from spofless.backup.plan import BackupInfo
from spofless.backup.schedule import Cron, drill_due, next_firing, staleness
from spofless.topology import TopologyError, load_topology
from spofless.topology._backup import BackupSchedule

UTC = datetime.UTC


def t(s: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_previous_fire_times() -> None:
    sunday = Cron.parse("0 2 * * 0")
    assert sunday.previous(t("2026-12-04 12:00")) == t("2026-11-29 02:00")  # a Friday
    assert sunday.previous(t("2026-11-29 02:00")) == t("2026-11-29 02:00")
    weekdays = Cron.parse("30 2 * * 1-6")
    assert weekdays.previous(t("2026-11-30 02:29")) == t("2026-11-28 02:30")  # Mon -> Sat
    every = Cron.parse("*/15 * * * *")
    assert every.previous(t("2026-12-04 12:14:59")) == t("2026-12-04 12:00")
    # Day of month and weekday both restricted: either fires.
    either = Cron.parse("0 0 1 * 1")
    assert either.previous(t("2026-12-03 00:00")) == t("2026-12-01 00:00")
    assert either.previous(t("2026-12-08 00:00")) == t("2026-12-07 00:00")
    assert Cron.parse("0 0 * * 7").weekdays == frozenset({0})
    with pytest.raises(ValueError, match="5 fields"):
        Cron.parse("daily")
    with pytest.raises(ValueError, match="outside 0-23"):
        Cron.parse("0 25 * * *")
    with pytest.raises(ValueError, match="never fires"):
        Cron.parse("0 0 31 2 *").previous(t("2026-12-04 00:00"))


def _b(kind: str, start: str) -> BackupInfo:
    s = t(start).timestamp()
    return BackupInfo(start, kind, None, 1, 0, 1, s, s + 60)  # type: ignore[arg-type]


def test_staleness_counts_a_missed_run_not_a_running_one() -> None:
    sched = BackupSchedule(full="0 2 * * 0", incremental="0 2 * * 1-6")
    now = t("2026-12-02 02:10").timestamp()  # a Wednesday, today's incremental may be running
    ok = [_b("full", "2026-11-29 02:00"), _b("incremental", "2026-12-01 02:00")]
    assert staleness(sched, ok, now) is None
    missed = [_b("full", "2026-11-29 02:00"), _b("incremental", "2026-11-30 02:00")]
    assert "incremental backup due at 2026-12-01 02:00" in (staleness(sched, missed, now) or "")
    old_full = [_b("full", "2026-11-22 02:00"), _b("incremental", "2026-12-01 02:00")]
    assert "full backup due at 2026-11-29 02:00" in (staleness(sched, old_full, now) or "")
    # Within the hour after a due time the run may still be going: the one before counts.
    just_due = t("2026-11-30 02:30").timestamp()  # Monday: its incremental may be running
    assert staleness(sched, [_b("full", "2026-11-29 02:00")], just_due) is None
    assert "never" in (staleness(sched, [], now) or "")
    assert staleness(BackupSchedule(), [], now) is None
    # A schedule every 15 s: a run late by minutes (a restore drill in the way) is not
    # missed; nothing started for over an hour is.
    every = BackupSchedule(incremental="*/15 * * * * *")
    started = [_b("full", "2026-12-02 02:00")]
    assert staleness(every, started, t("2026-12-02 02:05").timestamp()) is None
    late = staleness(every, started, t("2026-12-02 03:00").timestamp() + 16) or ""
    assert "incremental backup due at 2026-12-02 02:00" in late


def test_due_takes_a_missed_run_once_and_full_wins() -> None:
    from spofless.backup.schedule import due

    sched = BackupSchedule(full="0 2 * * 0", incremental="0 2 * * 1-6")
    sunday_0201 = t("2026-11-29 02:01").timestamp()
    assert due(sched, [], sunday_0201) == "full"
    assert due(sched, [_b("full", "2026-11-29 02:00")], sunday_0201) is None
    # Monday 02:01: the incremental is due; after it ran, nothing until Tuesday.
    monday = t("2026-11-30 02:01").timestamp()
    assert due(sched, [_b("full", "2026-11-29 02:00")], monday) == "incremental"
    done = [_b("full", "2026-11-29 02:00"), _b("incremental", "2026-11-30 02:00")]
    assert due(sched, done, t("2026-11-30 23:59").timestamp()) is None
    # Down from Saturday to the next Monday: one full (missed Sunday) first, once.
    late = t("2026-12-07 09:00").timestamp()
    assert due(sched, done, late) == "full"
    assert due(sched, [*done, _b("full", "2026-12-07 09:00")], late + 60) is None
    assert due(BackupSchedule(), [], late) is None


def test_status_line_shows_age_and_staleness_at_the_time_shown() -> None:
    import dataclasses

    from spofless.backup._scheduler import status_line

    sched = BackupSchedule(full="0 2 * * *")
    b = BackupInfo(
        "20261204-020000F",
        "full",
        None,
        1,
        0,
        1,
        t("2026-12-04 02:00").timestamp(),
        t("2026-12-04 02:05").timestamp(),
    )
    doc = {"newest": dataclasses.asdict(b), "newest_full": dataclasses.asdict(b), "error": None}
    line = status_line(doc, sched, t("2026-12-04 12:05").timestamp())
    assert line == "last backup 20261204-020000F (full) ended 2026-12-04 02:05 UTC, 10h00m ago"
    # Two days later, with the same file: the next day's run was missed.
    later = status_line(doc, sched, t("2026-12-06 12:00").timestamp())
    assert "2d09h ago" in later and "STALE: the full backup due at 2026-12-06 02:00" in later
    failed = status_line({**doc, "error": "no instance answered"}, sched, b.stop_time + 60)
    assert failed.endswith("last attempt failed: no instance answered")
    assert status_line(None, sched, 0) == "no backup status yet"
    assert status_line({"newest": None, "newest_full": None}, sched, b.stop_time).startswith(
        "no backup yet; STALE"
    )


def test_a_seconds_field_and_the_next_firing() -> None:
    every20 = Cron.parse("*/20 * * * * *")
    assert every20.previous(t("2026-12-04 12:00:59")) == t("2026-12-04 12:00:40")
    assert every20.next(t("2026-12-04 12:00:40")) == t("2026-12-04 12:01:00")
    assert every20.next(t("2026-12-04 12:00:39.5")) == t("2026-12-04 12:00:40")
    # Five fields fire at second 0; next is strictly after.
    daily = Cron.parse("0 4 * * *")
    assert daily.next(t("2026-12-04 04:00")) == t("2026-12-05 04:00")
    assert daily.next(t("2026-12-04 03:59:59")) == t("2026-12-04 04:00")
    assert Cron.parse("0 0 1 * 1").next(t("2026-12-01 00:00")) == t("2026-12-07 00:00")
    assert Cron.parse("30 2 * * 1-6").next(t("2026-12-05 02:30")) == t("2026-12-07 02:30")
    with pytest.raises(ValueError, match="6 with seconds"):
        Cron.parse("* * * * * * *")
    with pytest.raises(ValueError, match="second '60' outside 0-59"):
        Cron.parse("60 * * * * *")
    with pytest.raises(ValueError, match="not a number"):
        Cron.parse("x * * * *")


def test_a_restore_drill_is_due_once_per_firing() -> None:
    sched = BackupSchedule(drill="0 4 * * *")
    now = t("2026-12-04 05:00").timestamp()
    assert drill_due(sched, None, now)  # never drilled: at once
    assert drill_due(sched, t("2026-12-03 04:00").timestamp(), now)
    assert not drill_due(sched, t("2026-12-04 04:00:01").timestamp(), now)
    assert not drill_due(BackupSchedule(full="0 2 * * 0"), None, now)
    both = BackupSchedule(incremental="0 2 * * *", drill="*/15 * * * * *")
    assert next_firing(both, t("2026-12-04 05:00:01").timestamp()) == (
        t("2026-12-04 05:00:15").timestamp()
    )
    assert next_firing(BackupSchedule(), 0.0) is None


def test_a_bad_cron_in_the_topology_is_a_file_line_error(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(
        "name: t\ncomponents:\n  db:\n    kind: postgres\n    port: 5432\n    backup:\n"
        "      repositories: [{type: fs, path: /b}]\n"
        "      schedule: {incremental: '0 2 * * *', drill: '0 61 * * *'}\nentry: [db]\n"
    )
    with pytest.raises(TopologyError) as err:
        load_topology(f)
    text = str(err.value)
    assert "t.yaml:8" in text and "schedule.drill" in text and "hour '61' outside 0-23" in text


def test_status_shows_the_newest_restore_drill_a_failed_one_loudly() -> None:
    from spofless.backup._scheduler import status_line

    sched = BackupSchedule(incremental="0 2 * * *", drill="0 4 * * *")
    now = t("2026-12-04 05:00").timestamp()
    drill = {"at": now - 120, "ok": True, "rto": 12.34, "rpo": 0.5}
    line = status_line({"newest": None, "drill": drill}, sched, now)
    assert "last restore drill 2m00s ago: RTO 12.3s, RPO 0.5s" in line
    bad = {"at": now - 60, "ok": False, "failed_phase": "restore", "error": "k: damaged"}
    line = status_line({"newest": None, "drill": bad}, sched, now)
    assert "RESTORE DRILL FAILED 1m00s ago (restore): k: damaged" in line
