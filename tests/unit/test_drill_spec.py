"""The `drills:` section of a topology file: shapes (file:line at load) and references."""

from __future__ import annotations

import pytest

from spofless.topology import TopologyError, load_topology_text
from spofless.topology._drills import (
    Trigger,
    drill_problems,
    drills_of,
    parse_seconds,
    parse_when,
)

BASE = """\
name: t
regions:
  eu: {zones: [a, b]}
hosts:
  n1: {zone: eu/a}
  n2: {zone: eu/b}
components:
  lb: {kind: load_balancer, instances: [n1, n2], needs: [web], port: 8000, routes: [{to: web}]}
  web: {kind: service, instances: [n1, n2], port: 9000}
  db: {kind: postgres, instances: [n1, n2], needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: [n1, n2], port: 2379, peer_port: 2390}
entry: [lb, db]
"""


def topo(drills: str):  # type: ignore[no-untyped-def]
    return load_topology_text(BASE + "drills:\n" + drills, source="t.yaml")


def test_a_scenario_parses_with_durations_roles_and_events() -> None:
    t = topo(
        """\
  crash:
    traffic:
      - {http: {via: lb, to: lb, path: /}, rate: 50}
      - {sql_writes: {to: db}, rate: 25}
    faults:
      - {at: 2s, kill: db, role: primary}
      - {at: 500ms, pause: etcd, role: leader, for: 1.5s}
      - {when: db.role_change, kill: lb/1}
      - {at: 3, cut: zone:eu/a, for: 2s}
    abort: {error_rate: 0.5, for: 10s}
    expect: {lost_writes: 0, rto: 5s}
"""
    )
    d = drills_of(t)["crash"]
    assert [f.action for f in d.faults] == ["kill", "pause", "kill", "cut"]
    assert d.faults[1].at == 0.5 and d.faults[1].for_ == 1.5
    assert d.faults[2].when == "db.role_change" and d.faults[2].target == "lb/1"
    assert d.faults[3].lab_only and not d.faults[0].lab_only
    assert d.expect == {"lost_writes": 0.0, "rto": 5.0}
    assert d.traffic[1].sql_writes is not None and d.traffic[1].rate == 25
    assert d.planned_duration() == 10.0  # cut at 3 s for 2 s, then 5 s
    assert drill_problems(t) == []


def test_shape_errors_name_file_line_and_field() -> None:
    with pytest.raises(TopologyError) as err:
        topo(
            """\
  bad:
    faults:
      - {at: 1s, kill: db, pause: db}
      - {kill: db}
      - {at: soon, kill: db}
      - {at: 1s, kill: db, role: boss}
      - {when: db.exploded, kill: db}
"""
        )
    text = str(err.value)
    lines = text.splitlines()
    assert len(lines) == 5, text
    assert lines[0].startswith("t.yaml:16:") and "exactly one action" in lines[0]
    assert "found kill, pause" in lines[0]
    assert lines[1].startswith("t.yaml:17:") and "either `at:`" in lines[1]
    assert lines[2].startswith("t.yaml:18:") and "drills.bad.faults[2].at" in lines[2]
    assert "role" in lines[3] and "t.yaml:19:" in lines[3]
    assert "event one of" in lines[4]


def test_names_that_are_not_in_the_topology_are_reported_where_written() -> None:
    with pytest.raises(TopologyError) as raised:  # loading the file reports them all
        topo(
            """\
  bad:
    traffic:
      - {http: {via: lb, to: web}}
      - {sql_writes: {to: cache}}
    faults:
      - {at: 1s, kill: dbb, role: primary}
      - {at: 1s, kill: web, role: primary}
      - {at: 1s, kill: db/7}
      - {at: 1s, kill: host:n9}
      - {at: 1s, cut: zone:eu/c}
      - {at: 1s, latency: host:n1}
      - {when: cache.down, stop: web}
      - {at: 1s, switchover: etcd}
"""
        )
    found = [str(p) for p in raised.value.problems]
    assert len(found) == 10, found
    assert found[0].startswith("t.yaml:16:") and "no load_balancer component 'web'" in found[0]
    assert "no postgres or load_balancer component 'cache'" in found[1]
    assert "unknown component 'dbb'" in found[2]
    assert "web (kind service) has no role 'primary'" in found[3]
    assert "db has instances 0..1, not '7'" in found[4]
    assert "unknown host 'n9'" in found[5]
    assert "unknown zone 'eu/c'" in found[6]
    assert "zone and region links" in found[7]
    assert "drills.bad.faults[6].when: unknown component 'cache'" in found[8]
    assert "no postgres component 'etcd'" in found[9]


def test_durations() -> None:
    assert parse_seconds("250ms") == 0.25
    assert parse_seconds("1.5m") == 90.0
    assert parse_seconds(3) == 3
    with pytest.raises(ValueError):
        parse_seconds("3 days")


def test_when_names_an_event_or_a_lag_bound() -> None:
    assert parse_when("db.role_change") == Trigger("db", "role_change")
    assert parse_when("db-ro.switchover").key == "db-ro.switchover"
    assert parse_when("db.replica_lag > 1MB") == Trigger("db", "replica_lag", 1 << 20)
    assert parse_when("db.replica_lag>512kB").key == "db.replica_lag>524288"
    assert parse_when(" db.replica_lag > 4096 ").bound == 4096
    assert parse_when("lb.backend_down") == Trigger("lb", "backend_down")
    for bad in ("db.replica_lag", "db.replica_lag < 1MB", "db.replica_lag > 1 parsec", "db"):
        with pytest.raises(ValueError, match="replica_lag > <size>"):
            parse_when(bad)


def test_events_on_the_wrong_kind_of_component_are_reported_where_written() -> None:
    with pytest.raises(TopologyError) as shape:
        topo(
            """\
  events:
    faults:
      - {when: "db.replica_lag > lots", kill: db/0}
"""
        )
    (problem,) = shape.value.problems
    assert str(problem).startswith("t.yaml:16:") and "replica_lag > <size>" in str(problem)
    with pytest.raises(TopologyError) as raised:
        topo(
            """\
  events:
    faults:
      - {when: "web.replica_lag > 1MB", kill: db/0}
      - {when: db.backend_down, kill: db/0}
      - {when: lb.backend_down, kill: db/0}
      - {when: lb.vip_handover, kill: db/0}
      - {when: etcd.switchover, kill: db/0}
      - {when: "db.replica_lag > 64kB", kill: db/0}
      - {when: db.switchover, kill: db/0}
"""
        )
    found = [str(p) for p in raised.value.problems]
    assert len(found) == 5, found
    assert found[0].startswith("t.yaml:16:") and "drills.events.faults[0].when" in found[0]
    assert "replica_lag is an event of a postgres component; web is a service" in found[0]
    assert "backend_down is an event of a load_balancer component; db is a postgres" in found[1]
    assert "t.yaml:18:" in found[2] and "lb has no `admin_port`" in found[2]
    assert "lb has no `vip:`" in found[3]
    assert "switchover is an event of a postgres component; etcd is a etcd" in found[4]
