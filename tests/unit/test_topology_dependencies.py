"""What a component's own fields make it depend on counts, whether or not `needs` says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.analysis import analyze
from spofless.topology import TopologyError, load_topology_text

HEAD = """\
name: shop
hosts:
  h1: {}
  h2: {}
  h3: {}
"""


def test_a_route_is_a_dependency() -> None:
    # The load-balancer snippet the README once had: the web tier it routes to was ignored.
    t = load_topology_text(
        HEAD + "components:\n"
        "  lb: {kind: load_balancer, instances: [h1, h2], port: 8000, routes: [{to: web}]}\n"
        "  web: {kind: service, instances: [h3], port: 8080}\n"
        "entry: [lb]\n"
    )
    assert t.dependencies("lb") == ["web"]
    assert t.required_components() == ["web", "lb"]
    report = analyze(t)
    assert "instance:web/0" in [s.element for s in report.spofs]
    assert report.elements == 3 + 3  # three hosts, three instances


def test_a_vip_depends_on_its_etcd() -> None:
    t = load_topology_text(
        HEAD + "components:\n"
        "  lb:\n    kind: load_balancer\n    instances: [h1, h2]\n    port: 8000\n"
        "    vip: {address: 10.0.0.9/24, dcs: coord}\n"
        "  coord: {kind: etcd, instances: [h3], port: 2379, peer_port: 2390}\n"
        "entry: [lb]\n"
    )
    assert t.dependencies("lb") == ["coord"]
    assert "host:h3" in [s.element for s in analyze(t).spofs]


def test_a_vip_without_dcs_depends_on_the_only_etcd() -> None:
    t = load_topology_text(
        HEAD + "components:\n"
        "  lb:\n    kind: load_balancer\n    instances: [h1, h2]\n    port: 8000\n"
        "    vip: {address: 10.0.0.9/24}\n"
        "  etcd: {kind: etcd, instances: [h3], port: 2379, peer_port: 2390}\n"
        "entry: [lb]\n"
    )
    assert t.dependencies("lb") == ["etcd"]


def test_a_dns_record_is_a_dependency() -> None:
    t = load_topology_text(
        HEAD + "components:\n"
        "  dns: {kind: dns, instances: [h1, h2], records: {www: web, api: {component: api}}}\n"
        "  web: {kind: service, instances: [h1, h2]}\n"
        "  api: {kind: service, instances: [h3]}\n"
        "entry: [dns]\n"
    )
    assert t.dependencies("dns") == ["web", "api"]
    assert "instance:api/0" in [s.element for s in analyze(t).spofs]


def test_postgres_depends_on_the_only_etcd_even_without_needs() -> None:
    t = load_topology_text(
        HEAD + "components:\n"
        "  db: {kind: postgres, instances: [h1, h2]}\n"
        "  etcd: {kind: etcd, instances: [h3]}\n"
        "entry: [db]\n"
    )
    assert t.dependencies("db") == ["etcd"]
    assert [s.element for s in analyze(t).spofs] == ["host:h3", "instance:etcd/0"]


def test_needs_repeating_a_route_counts_once() -> None:
    t = load_topology_text(
        HEAD + "components:\n"
        "  lb: {kind: load_balancer, instances: [h1], needs: [web], routes: [{to: web}]}\n"
        "  web: {kind: service, instances: [h2]}\n"
        "entry: [lb]\n"
    )
    assert t.dependencies("lb") == ["web"]


@pytest.mark.parametrize(
    ("components", "field", "message"),
    [
        (
            "  lb: {kind: load_balancer, instances: [h1], routes: [{to: api}]}\n"
            "  apis: {kind: service, instances: [h2]}\n",
            "components.lb.routes[0].to",
            "unknown component 'api' (did you mean 'apis'?)",
        ),
        (
            "  lb: {kind: dns, instances: [h1], records: {www: web}}\n",
            "components.lb.records.www",
            "unknown component 'web'",
        ),
        (
            "  lb: {kind: dns, instances: [h1], records: {www: {component: web}}}\n",
            "components.lb.records.www.component",
            "unknown component 'web'",
        ),
        (
            "  lb: {kind: dns, instances: [h1], regions: {mars: [10.0.0.0/8]}}\n",
            "components.lb.regions.mars",
            "unknown region 'mars' (the file defines no regions)",
        ),
        (
            "  lb:\n    kind: load_balancer\n    instances: [h1, h2]\n"
            "    vip: {address: 10.0.0.9/24, dcs: web}\n"
            "  web: {kind: service, instances: [h2]}\n",
            "components.lb.vip.dcs",
            "'web' is of kind service, not an etcd component",
        ),
        (
            "  lb: {kind: load_balancer, instances: [h1], routes: [{to: web}]}\n"
            "  web: {kind: service, instances: [h2], needs: [lb]}\n",
            "components.web.needs[0]",
            "cycle in dependencies: lb -> web (route) -> lb",
        ),
    ],
)
def test_unknown_targets_are_load_errors(components: str, field: str, message: str) -> None:
    with pytest.raises(TopologyError) as err:
        load_topology_text(HEAD + "components:\n" + components + "entry: [lb]\n", source="f.yaml")
    assert any(p.field == field and p.message == message for p in err.value.problems), str(
        err.value
    )
    assert all(p.line > 0 for p in err.value.problems)


def test_dns_regions_are_checked_against_the_file_regions() -> None:
    text = (
        "name: shop\nregions:\n  eu-west: {zones: [a]}\nhosts:\n  h1: {zone: eu-west/a}\n"
        "components:\n  dns:\n    kind: dns\n    instances: [h1]\n"
        "    regions: {eu-wset: [10.0.0.0/8]}\nentry: [dns]\n"
    )
    with pytest.raises(TopologyError, match=r"unknown region 'eu-wset' \(did you mean 'eu-west'"):
        load_topology_text(text)
    load_topology_text(text.replace("eu-wset", "eu-west"))


def test_a_component_no_entry_reaches_is_a_warning() -> None:
    t = load_topology_text(
        HEAD + "components:\n"
        "  web: {kind: service, instances: [h1, h2]}\n"
        "  cache: {kind: cache, instances: [h3]}\n"
        "entry: [web]\n",
        source="f.yaml",
    )
    (warning,) = t.warnings
    assert warning.field == "components.cache" and warning.line == 8
    assert "no entry component depends on cache" in warning.message
    # The analysis leaves it out, so its lone instance is no finding.
    assert analyze(t).ok


def test_hosts_sharing_one_address_are_a_warning() -> None:
    t = load_topology_text(
        "name: shop\nhosts:\n  h1: {address: 127.0.0.1}\n  h2: {address: 127.0.0.2}\n"
        "  h3: {address: 10.0.0.3}\n"
        "components:\n  web: {kind: service, instances: [h1, h2, h3], min_up: 2}\n"
        "entry: [web]\n"
    )
    (warning,) = t.warnings
    assert warning.field == "hosts.h1.address"
    assert "hosts h1, h2 share address loopback" in warning.message
    assert "a single point of failure of web" in warning.message


def test_hosts_without_an_address_are_not_said_to_share_one() -> None:
    t = load_topology_text(
        HEAD + "components:\n  web: {kind: service, instances: [h1, h2, h3]}\nentry: [web]\n"
    )
    assert t.warnings == ()


def test_overlapping_etcd_port_ranges_are_a_load_error() -> None:
    # Issue 11: port 2379 and peer_port 2380 for 3 members on one address.
    text = (
        "name: shop\nhosts:\n  h1: {}\n  h2: {}\n  h3: {}\ncomponents:\n"
        "  etcd: {kind: etcd, instances: [h1, h2, h3], port: 2379, peer_port: 2380}\n"
        "entry: [etcd]\n"
    )
    with pytest.raises(TopologyError) as err:
        load_topology_text(text, source="f.yaml")
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (7, "components.etcd.peer_port")
    assert "port 2380 on 127.0.0.1 is both etcd/0's peer_port and etcd/1's port" in problem.message
    assert "e.g. peer_port: 2382" in problem.message
    load_topology_text(text.replace("peer_port: 2380", "peer_port: 2382"))


def test_ports_on_different_addresses_do_not_collide() -> None:
    load_topology_text(
        "name: shop\nhosts:\n  h1: {address: 10.0.0.1}\n  h2: {address: 10.0.0.2}\n"
        "components:\n  web: {kind: service, instances: [h1], port: 8000}\n"
        "  api: {kind: service, instances: [h2], port: 8000}\n  both: {kind: x, instances: 1, "
        "needs: [web, api]}\nentry: [both]\n"
    )


def test_ports_of_two_components_on_one_address_collide() -> None:
    with pytest.raises(TopologyError, match=r"port 8001 on 127\.0\.0\.1 is both db/0's api_port"):
        load_topology_text(
            HEAD + "components:\n  web: {kind: service, instances: [h1, h2], port: 8000}\n"
            "  db: {kind: postgres, instances: [h3], port: 5432, api_port: 8001}\n"
            "entry: [web, db]\n"
        )


def test_implied_dependencies_match_brute_force() -> None:
    from tests.unit import analysis_bruteforce as brute

    t = load_topology_text(
        "name: shop\nhosts:\n  h1: {availability: 0.9}\n  h2: {availability: 0.8}\n"
        "  h3: {availability: 0.7}\ncomponents:\n"
        "  dns: {kind: dns, instances: [h1, h2], records: {www: lb}, availability: 0.95}\n"
        "  lb: {kind: load_balancer, instances: [h1, h3], routes: [{to: web}],"
        " availability: 0.9}\n"
        "  web: {kind: service, instances: [h2, h3], needs: [db], availability: 0.85}\n"
        "  db: {kind: postgres, instances: [h1, h2], availability: 0.9}\n"
        "  etcd: {kind: etcd, instances: [h1, h2, h3], min_up: majority, availability: 0.9}\n"
        "entry: [dns]\n"
    )
    assert t.required_components() == ["etcd", "db", "web", "lb", "dns"]
    assert analyze(t).availability == pytest.approx(brute.availability(t), abs=1e-12)


def test_up_with_overlapping_etcd_ports_exits_2_without_a_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spofless.cli import main

    path = tmp_path / "t.yaml"
    path.write_text(
        "name: shop\nhosts:\n  h1: {}\n  h2: {}\n  h3: {}\ncomponents:\n"
        "  etcd: {kind: etcd, instances: [h1, h2, h3], port: 2379, peer_port: 2380,"
        " min_up: majority}\nentry: [etcd]\n"
    )
    result = CliRunner().invoke(main, ["up", str(path), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"error: {path}:7:59: components.etcd.peer_port: port 2380")
    assert not (tmp_path / "s").exists()
