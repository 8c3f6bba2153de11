"""Restore drills recorded (good and failed), summarised, as Prometheus gauges, as rows of
the drill history, at the agent's /status and /metrics, and as the monitor's events."""

from __future__ import annotations

from pathlib import Path

from spofless.backup import (
    DrillResult,
    DrillSummaryCache,
    RestoreDrillError,
    drill_metrics,
    drill_summary,
    failed_record,
    history_document,
    latest_drill,
    record_drill,
    write_record,
)
from spofless.drill import history
from spofless.monitor import FlapDamper, LiveState
from spofless.monitor._probe import _postgres
from spofless.pg import Role
from spofless.pg.api import ApiSnapshot, MemberStatus, route
from spofless.topology import load_topology_text


def good(started: float) -> DrillResult:
    return DrillResult("L", 10.0, 5.0, 4.0, 1.0, 1, 1, started - 2.0, started, True, started, 70.0)


def failed(started: float) -> dict[str, object]:
    err = RestoreDrillError("replay", "scratch instance stopped during recovery", started)
    return failed_record("db", "fs:/b", err, started + 3)


def test_the_summary_has_the_newest_drill_and_the_last_good_one(tmp_path: Path) -> None:
    assert drill_summary(tmp_path, "db") is None and drill_metrics(None, "db") == []
    cache = DrillSummaryCache(tmp_path, "db")
    assert cache.get() is None
    record_drill(tmp_path, "db", "fs:/b", good(1000.0))
    first = cache.get()
    assert first is not None and first["ok"] and first["rto"] == 20.0 and first["rpo"] == 2.0
    write_record(tmp_path, failed(2000.0))
    s = cache.get()  # a record added: read again
    assert s is not None and (s["at"], s["ok"], s["failed_phase"]) == (2000.0, False, "replay")
    # The figures stay the last good drill's; `check` reads only good ones.
    assert (s["rto"], s["last_success_at"]) == (20.0, 1000.0)
    assert latest_drill(tmp_path, "db") is not None
    assert latest_drill(tmp_path, "db", ok_only=False) == failed(2000.0)
    text = "\n".join(drill_metrics(s, "db"))
    assert 'spofless_backup_restore_drill_failed{component="db"} 1' in text
    assert 'spofless_backup_restore_drill_rto_seconds{component="db"} 20' in text
    assert 'spofless_backup_restore_drill_phase_seconds{component="db",phase="replay"} 4' in text
    assert 'spofless_backup_restore_drill_rpo_seconds{component="db"} 2' in text
    assert 'spofless_backup_restore_drill_last_success_timestamp_seconds{component="db"} 1000' in (
        text
    )
    assert "# TYPE spofless_backup_restore_drill_failed gauge" in text


def test_drills_are_rows_of_the_drill_history(tmp_path: Path) -> None:
    ok = good(1000.0).to_json("db", "fs:/b")
    history.append(tmp_path, history_document(ok, "shop"))
    history.append(tmp_path, history_document(failed(2000.0), "shop"))
    rows = history.load(tmp_path)
    assert [(r["plan"], r["ok"], r["rto"], r["errors"]) for r in rows] == [
        ("restore db", 1, 20.0, 0),
        ("restore db", 0, None, 1),
    ]
    assert rows[1]["duration"] == 3.0
    history.history_table(rows)  # renders


def test_the_agent_serves_the_drill_and_the_monitor_makes_events(tmp_path: Path) -> None:
    write_record(tmp_path, failed(2000.0))
    summary = drill_summary(tmp_path, "db")
    me = MemberStatus("db-0", running=True, role=Role.PRIMARY, leader=True)
    snap = ApiSnapshot(
        me=me, restore_drill=summary, drill_metrics=tuple(drill_metrics(summary, "db"))
    )
    body = route("GET", "/status", snap).body
    assert isinstance(body, dict) and body["restore_drill"]["ok"] is False
    assert 'spofless_backup_restore_drill_failed{component="db"} 1' in str(
        route("GET", "/metrics", snap).body
    )
    assert "restore_drill" not in str(route("GET", "/metrics", ApiSnapshot(me=me)).body)

    topology = load_topology_text(
        "name: shop\ncomponents:\n  db: {kind: postgres, instances: 2, port: 5432, "
        "api_port: 8008}\nentry: [db]\n"
    )
    live = LiveState(
        topology, ["db/0", "db/1"], me="m/0", fall=1, rise=1, damper=FlapDamper(60, 4), max_lag=1
    )
    obs = _postgres({**body, "role": "primary", "state": "running"})
    assert obs.facts["restore_drill"] == summary
    (event,) = [e for e in live.observe("db/0", obs, 1.0) if e.kind.startswith("restore")]
    assert (event.kind, event.severity, event.subject) == ("restore_drill_failed", "error", "db")
    assert "RESTORE DRILL FAILED (replay)" in event.message
    # The other member reports the same drill: no second event.
    assert not [e for e in live.observe("db/1", obs, 1.1) if e.kind.startswith("restore")]
    # The next drill restored: an info event with its figures.
    record_drill(tmp_path, "db", "fs:/b", good(3000.0))
    again = {**body, "restore_drill": drill_summary(tmp_path, "db")}
    obs = _postgres({**again, "role": "primary"})
    (event,) = [e for e in live.observe("db/0", obs, 2.0) if e.kind.startswith("restore")]
    assert (event.kind, event.severity) == ("restore_drill", "info")
    assert "restored in 20.0s, RPO 2.0s" in event.message
