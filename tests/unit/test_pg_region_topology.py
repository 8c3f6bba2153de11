"""`auto_promote` on a standby cluster: its quorum and ttl validated with file:line, and
the region lease the agents get from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.pg._from_topology import region_settings
from spofless.topology import TopologyError, load_topology_text

GROUP = """\
name: t
security: {{tls: false}}
regions:
  us: {{zones: [a]}}
  eu: {{zones: [a]}}
  w: {{zones: [a]}}
hosts:
  us1: {{zone: us/a}}
  eu1: {{zone: eu/a}}
  w1: {{zone: w/a}}
components:
  db: {{kind: postgres, instances: [us1], needs: [etcd_us], port: 5432}}
  db_eu:
    kind: postgres
    instances: [eu1]
    needs: [etcd_eu]
    port: 6432
    standby_of: {standby_of}
    auto_promote: {{quorum: {quorum}, ttl: {ttl}}}
  etcd_us: {{kind: etcd, instances: [us1], port: 2379}}
  etcd_eu: {{kind: etcd, instances: [eu1], port: 2479}}
  q: {{kind: etcd, instances: [{members}], port: 2579}}
entry: [db]
"""


def text(**kw: object) -> str:
    fields: dict[str, object] = {
        "standby_of": "db",
        "quorum": "q",
        "ttl": 6,
        "members": "us1, eu1, w1",
    }
    fields.update(kw)
    return GROUP.format(**fields)


def test_every_cluster_of_the_group_holds_the_region_and_needs_the_quorum() -> None:
    t = load_topology_text(text(), source="t.yaml")
    us, eu = region_settings(t, "db"), region_settings(t, "db_eu")
    assert us is not None and eu is not None
    assert us.prefix == eu.prefix == "/spofless/t/db/region" and us.ttl == 6
    assert (us.auto_promote, eu.auto_promote) == (False, True)
    assert len(us.endpoints) == 3
    assert "q" in t.dependencies("db") and "q" in t.dependencies("db_eu")


@pytest.mark.parametrize(
    ("kw", "where", "message"),
    [
        ({"members": "us1, eu1, eu1"}, "auto_promote.quorum", "in 2 region(s) (eu, us)"),
        (
            {"members": "us1, eu1, w1, eu1, eu1"},
            "auto_promote.quorum",
            "region eu holds 3 of etcd 'q''s 5 members, a majority",
        ),
        ({"ttl": 5}, "auto_promote.ttl", "shorter than twice db's ttl (3s)"),
        ({"quorum": "etcd_usx"}, "auto_promote.quorum", "unknown component 'etcd_usx'"),
        ({"quorum": "db"}, "auto_promote.quorum", "'db' is of kind postgres, not an etcd"),
        ({"standby_of": "null"}, "db_eu.auto_promote", "has no standby cluster and is none"),
    ],
)
def test_a_bad_auto_promote_is_named_where_it_is_written(
    kw: dict[str, object], where: str, message: str
) -> None:
    with pytest.raises(TopologyError) as err:
        load_topology_text(text(**kw), source="t.yaml")
    s = str(err.value)
    assert where in s and message in s, s


def test_a_bad_auto_promote_exits_2_from_check(tmp_path: Path) -> None:
    import subprocess
    import sys

    f = tmp_path / "t.yaml"
    f.write_text(text(members="us1, eu1, eu1"))
    exe = Path(sys.executable).with_name("spofless")
    out = subprocess.run([str(exe), "check", str(f)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "auto_promote.quorum" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_says_the_standby_cluster_takes_over_by_itself() -> None:
    from spofless.analysis import analyze

    report = analyze(load_topology_text(text(), source="t.yaml"))
    (rec,) = report.recovery
    assert rec.region_loss is not None and "automatic" in rec.region_loss
    assert "quorum q" in rec.region_loss and "by hand" not in rec.region_loss
    region_fix = next(f for f in report.findings if "region:us" in f.elements)
    notes = list(region_fix.steps)
    assert any("takes over by itself" in n for n in notes), notes
    assert not any("recovers it by hand" in n for n in notes), notes
