"""`kind: postgres` fields in a topology: defaults, and bad values named with file:line."""

from __future__ import annotations

import pytest

from spofless.topology import PostgresComponent, TopologyError, load_topology_text

BASE = """\
name: t
components:
  db:
    kind: postgres
    instances: 3
    port: 5432
{extra}
entry: [db]
"""


def test_defaults() -> None:
    db = load_topology_text(BASE.format(extra="")).components["db"]
    assert isinstance(db, PostgresComponent)
    assert (db.synchronous, db.strict, db.ttl, db.loop_wait) == (False, False, 3, 0.5)
    assert db.maximum_lag_on_failover == 1024 * 1024 and not db.allow_reclone


def test_fields() -> None:
    extra = "    synchronous: true\n    strict: true\n    api_port: 8008\n    ttl: 10"
    db = load_topology_text(BASE.format(extra=extra)).components["db"]
    assert isinstance(db, PostgresComponent)
    assert db.synchronous and db.strict and db.api_port == 8008 and db.ttl == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    strict: true", "strict needs synchronous"),
        ("    ttl: 2\n    loop_wait: 1.5", "at most half the ttl"),
        ("    maximum_lag_on_failover: -1", "maximum_lag_on_failover"),
        ("    synchronus: true", "synchronus"),
    ],
)
def test_bad_values_are_named(extra: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        load_topology_text(BASE.format(extra=extra))
