"""`standby_of`: a postgres component's standby cluster in another region, validated with
file:line, its settings (the route it follows, the passwords it shares) and `check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.topology import TopologyError, load_topology_text

GROUP = """\
name: t
security: {{tls: false}}
regions:
  us: {{zones: [a]}}
  eu: {{zones: [a]}}
hosts:
  us1: {{zone: us/a, address: 10.0.1.1}}
  us2: {{zone: us/a, address: 10.0.1.2}}
  eu1: {{zone: eu/a, address: 10.0.2.1}}
  eu2: {{zone: eu/a, address: 10.0.2.2}}
components:
  app: {{kind: service, instances: [us1, us2], needs: [db]}}
  db:
    kind: postgres
    instances: [us1, us2]
    needs: [etcd_us]
    port: 5432
    api_port: 8008
  db_eu:
    kind: postgres
    instances: [eu1, eu2]
    needs: [etcd_eu]
    standby_of: {standby_of}
    port: 5432
    api_port: 8008
  etcd_us: {{kind: etcd, instances: [us1, us2, us1], port: 2379}}
  etcd_eu: {{kind: etcd, instances: [eu1, eu2, eu1], port: 2379}}
  cache: {{kind: redis, instances: 2}}
entry: [app]
"""


def test_a_standby_cluster_is_a_group_with_its_primary_and_no_warning() -> None:
    t = load_topology_text(GROUP.format(standby_of="db"))
    assert t.cluster_group("db") == ("db", "db_eu") == t.cluster_group("db_eu")
    assert t.cluster_group("app") == ("app",)
    # A recovery path, not an unreached component (nor is its etcd).
    assert not [w for w in t.warnings if "db_eu" in w.message or "etcd_eu" in w.message]
    assert "db_eu" not in t.required_components()


@pytest.mark.parametrize(
    ("standby_of", "message"),
    [
        ("dbb", "unknown component 'dbb' (did you mean 'db'?)"),
        ("db_eu", "cannot be a standby cluster of itself"),
        ("cache", "'cache' is of kind redis, not a postgres component"),
    ],
)
def test_bad_standby_of_is_named_with_its_line(standby_of: str, message: str) -> None:
    with pytest.raises(TopologyError) as err:
        load_topology_text(GROUP.format(standby_of=standby_of), source="g.yaml")
    text = str(err.value)
    assert message in text and "g.yaml:23:5" in text and "components.db_eu.standby_of" in text


def test_a_standby_of_a_standby_is_refused() -> None:
    text = GROUP.format(standby_of="db") + (
        "  db_ap: {kind: postgres, instances: 2, standby_of: db_eu, port: 6000}\n"
    ).replace("entry: [app]\n", "")
    text = text.replace("entry: [app]\n", "") + "entry: [app]\n"
    with pytest.raises(TopologyError, match=r"itself a standby cluster .* write standby_of: db"):
        load_topology_text(text)


def test_agent_settings_follow_the_other_cluster_and_share_its_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spofless.pg import agent_settings

    for role in ("superuser", "replication", "rewind"):
        monkeypatch.setenv(f"SPOFLESS_SECRET_DB_{role.upper()}", f"{role}-pw")
    t = load_topology_text(GROUP.format(standby_of="db"), source=str(tmp_path / "g.yaml"))
    s = agent_settings(t, "db_eu", 1, tmp_path)
    assert (s.cluster, s.standby_of) == ("db_eu", "db")
    assert s.peers == {"db": (("10.0.1.1", 5432), ("10.0.1.2", 5433))}
    auth = s.server.auth
    assert auth is not None and auth.replication_password.get_secret_value() == "replication-pw"
    # The other cluster's hosts may replicate from (and rewind against) this member.
    assert {"10.0.1.1", "10.0.1.2"} <= set(auth.peers)
    primary = agent_settings(t, "db", 0, tmp_path)
    assert (primary.standby_of, dict(primary.peers)) == (
        None,
        {"db_eu": (("10.0.2.1", 5432), ("10.0.2.2", 5433))},
    )


def test_the_read_write_route_is_libpq_multi_host() -> None:
    from spofless.pg import Upstream

    route = Upstream.route("db", [("10.0.1.1", 5432), ("10.0.1.2", 5433)], "spofless_standby_x")
    info = route.conninfo("db_eu-0")
    assert "host=10.0.1.1,10.0.1.2 port=5432,5433" in info
    assert "target_session_attrs=read-write" in info


def test_check_counts_the_standby_cluster_as_a_manual_recovery_path() -> None:
    from spofless.analysis import analyze

    t = load_topology_text(GROUP.format(standby_of="db"))
    report = analyze(t)
    # Honest: the primary's region is still a single point of failure (recovery is manual).
    assert "region:us" in {s.element for s in report.spofs}
    (rec,) = report.recovery
    assert rec.data == "db" and rec.region_loss is not None
    assert "db_eu (region eu)" in rec.region_loss and "warm standby" in rec.region_loss
    loss = {d.component: d for d in report.data_loss}
    assert loss["db_eu"].mode == "standby cluster of db" and not loss["db_eu"].rpo_zero
    region_fix = next(f for f in report.findings if "region:us" in f.elements)
    assert any("promote-region FILE --region eu" in s for s in region_fix.steps)
