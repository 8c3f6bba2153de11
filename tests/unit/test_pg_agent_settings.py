"""A topology's postgres instance as agent settings: one code path for the CLI and the stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.pg import agent_settings, dcs_settings, etcd_endpoints
from spofless.security import init_secrets
from spofless.topology import CannotRunError, Topology, load_topology, load_topology_text

TOPOLOGY = """\
name: shop
hosts:
  n1: {address: 127.0.0.2}
  n2: {}
components:
  db:
    kind: postgres
    instances: [n1, n2]
    needs: [etcd]
    port: 5500
    api_port: 8100
    synchronous: true
    ttl: 5
    loop_wait: 1
  etcd: {kind: etcd, instances: 3, port: 2400}
entry: [db]
"""


def _with_secrets(tmp_path: Path) -> Topology:
    f = tmp_path / "shop.yaml"
    f.write_text(TOPOLOGY)
    topology = load_topology(f)
    init_secrets(topology)
    return topology


def test_settings_of_an_instance(tmp_path: Path) -> None:
    s = agent_settings(_with_secrets(tmp_path), "db", 1, tmp_path)
    assert s.name == "db-1" and s.prefix == "/spofless/shop/db"
    assert s.server.port == 5501 and s.server.host == "127.0.0.1" and s.api_port == 8101
    assert s.server.data_dir == tmp_path.resolve() / "data" / "db-1"
    assert s.synchronous and s.loop_wait == 1 and s.dcs.ttl == 5 and s.dcs.renew_interval == 1
    first = agent_settings(_with_secrets(tmp_path), "db", 0, tmp_path)
    assert first.server.host == "127.0.0.2" and first.api_host == "127.0.0.2"


def test_access_rules_come_from_the_topology(tmp_path: Path) -> None:
    from spofless.pg._config import hba_text

    s = agent_settings(_with_secrets(tmp_path), "db", 0, tmp_path).server
    assert s.auth is not None and s.auth.peers == ("127.0.0.1",)
    assert s.auth.tls is not None and s.auth.tls.cert.name == "n1.crt"
    hba = hba_text(s)
    assert "trust" not in hba
    assert "local   all          postgres   peer map=spofless" in hba
    assert "hostssl replication  replicator  127.0.0.1/32  scram-sha-256" in hba
    assert "hostssl all          all" not in hba  # no component needs db: no clients


def test_missing_secrets_say_how_to_make_them(tmp_path: Path) -> None:
    f = tmp_path / "shop.yaml"
    f.write_text(TOPOLOGY)
    with pytest.raises(CannotRunError, match="spofless secrets init"):
        agent_settings(load_topology(f), "db", 0, tmp_path)


def test_etcd_endpoints_come_from_the_needed_etcd_component() -> None:
    urls = etcd_endpoints(load_topology_text(TOPOLOGY), "db")
    assert urls == ["https://127.0.0.1:2400", "https://127.0.0.1:2401", "https://127.0.0.1:2402"]
    plain = load_topology_text(TOPOLOGY + "security: {tls: false}\n")
    assert etcd_endpoints(plain, "db")[0] == "http://127.0.0.1:2400"


def test_the_agent_presents_the_client_certificate_to_etcd(tmp_path: Path) -> None:
    tls = agent_settings(_with_secrets(tmp_path), "db", 0, tmp_path).dcs.tls
    assert tls is not None
    assert (tls.cert.name, tls.key.name, tls.ca.name) == ("spofless.crt", "spofless.key", "ca.crt")
    assert all(p.exists() for p in (tls.ca, tls.cert, tls.key))


def test_default_timings_are_valid() -> None:
    s = dcs_settings(3, 0.5)
    assert s.ttl == 3 and s.renew_interval == 0.5 and s.retry_timeout == 0.75


@pytest.mark.parametrize(
    ("component", "index", "message"),
    [
        ("nope", 0, "no postgres component 'nope'"),
        ("etcd", 0, "etcd is kind etcd"),
        ("db", 2, "has instances 0..1, not 2"),
    ],
)
def test_bad_references_are_named(tmp_path: Path, component: str, index: int, message: str) -> None:
    with pytest.raises(CannotRunError, match=message):
        agent_settings(load_topology_text(TOPOLOGY), component, index, tmp_path)


def test_postgres_uses_the_only_etcd_and_without_one_is_refused() -> None:
    text = TOPOLOGY.replace("    needs: [etcd]\n", "")
    # Not in `needs`: the topology's only etcd, as the analysis counts it.
    assert etcd_endpoints(load_topology_text(text), "db")[0] == "https://127.0.0.1:2400"
    two = text.replace(
        "  etcd: {kind: etcd, instances: 3, port: 2400}",
        "  etcd: {kind: etcd, instances: 3, port: 2400}\n"
        "  etcd2: {kind: etcd, instances: 3, port: 2500, peer_port: 2600}",
    )
    with pytest.raises(CannotRunError, match="name the etcd component"):
        etcd_endpoints(load_topology_text(two), "db")


def test_too_short_a_ttl_for_the_loop_is_refused() -> None:
    with pytest.raises(CannotRunError, match="too short"):
        dcs_settings(2, 1.0)
