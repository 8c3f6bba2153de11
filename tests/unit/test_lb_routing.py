"""Routing to a PostgreSQL primary and its replicas: settings from a topology and the
choice of backend on a route without fail-open, without sockets."""

from __future__ import annotations

import pytest

from spofless.lb import lb_settings
from spofless.lb._backend import Backend
from spofless.lb._balancer import Balancer
from spofless.lb._messages import BackendState
from spofless.lb._settings import LbSettings
from spofless.topology import CannotRunError, TopologyError, load_topology_text

DB = """\
name: routed
components:
  db: {kind: postgres, instances: 3, port: 5432, api_port: 8008, synchronous: true}
  rw: {kind: load_balancer, instances: 2, mode: tcp, port: 6000, needs: [db], routes: [ROUTE]}
entry: [rw]
"""


def _settings(route: str, extra: str = "") -> LbSettings:
    text = DB.replace("ROUTE", route) + extra
    return lb_settings(load_topology_text(text), "rw", 1)


def test_role_primary_checks_the_agents_primary_endpoint() -> None:
    s = _settings("{to: db, role: primary}")
    (route,) = s.routes
    assert [(b.port, b.check_port) for b in route.backends] == [
        (5432, 8008),
        (5433, 8009),
        (5434, 8010),
    ]
    assert route.health.type == "http"
    assert route.health.path == "/primary"
    assert route.health.expect_status == [200]
    assert route.health.rise == 1  # the lease already decided; a second pass adds only delay
    assert (route.fail_open, route.exclusive) == (False, True)


def test_role_replica_round_robins_and_fails_open() -> None:
    s = _settings("{to: db, role: replica, max_lag: 16MB, health: {interval: 0.5, rise: 3}}")
    (route,) = s.routes
    assert route.health.path == "/replica?lag=16MB"
    assert (route.health.interval, route.health.rise) == (0.5, 3)
    assert (route.fail_open, route.exclusive) == (True, False)
    assert s.options.algorithm == "round_robin"


def test_fail_open_can_be_turned_on_for_a_primary_route() -> None:
    (route,) = _settings("{to: db, role: primary, fail_open: true}").routes
    assert route.fail_open and route.exclusive


def test_a_route_health_with_its_own_port() -> None:
    route_text = "{to: db, health: {type: http, path: /primary, port: 9000}, fail_open: false}"
    (route,) = _settings(route_text).routes
    assert [b.check_port for b in route.backends] == [9000, 9001, 9002]
    assert route.health.path == "/primary" and route.health.rise == 2
    assert (route.fail_open, route.exclusive) == (False, False)


def test_without_a_route_health_the_target_health_is_used_on_the_traffic_port() -> None:
    (route,) = _settings("{to: db}").routes
    assert [b.check_port for b in route.backends] == [None, None, None]
    assert route.health.type == "tcp" and route.fail_open


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("{to: db, role: primary, health: {path: /x}}", "role: primary sets the check's path"),
        ("{to: db, role: primary, max_lag: 10}", "max_lag` belongs to routes with role: replica"),
        ("{to: db, role: writer}", "role"),
        ("{to: db, role: replica, max_lag: lots}", "max_lag"),
        ("{to: db, health: {port: 70000}}", "port"),
    ],
)
def test_bad_route_fields_are_topology_errors(route: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        load_topology_text(DB.replace("ROUTE", route))


def test_a_role_needs_a_postgres_target_with_an_api_port() -> None:
    svc = DB.replace("ROUTE", "{to: web, role: primary}").replace(
        "entry:", "  web: {kind: service, instances: 2, port: 7000}\nentry:"
    )
    with pytest.raises(CannotRunError, match="web is kind service"):
        lb_settings(load_topology_text(svc), "rw", 0)
    no_api = DB.replace("ROUTE", "{to: db, role: primary}").replace(", api_port: 8008", "")
    with pytest.raises(CannotRunError, match="needs `api_port`"):
        lb_settings(load_topology_text(no_api), "rw", 0)
    http = DB.replace("ROUTE", "{to: db, role: primary}").replace("mode: tcp", "mode: http")
    with pytest.raises(CannotRunError, match="mode: tcp"):
        lb_settings(load_topology_text(http), "rw", 0)


def test_check_ports_must_fit() -> None:
    text = DB.replace("ROUTE", "{to: db, health: {type: tcp, port: 65534}}")
    with pytest.raises(CannotRunError, match="exceeds 65535"):
        lb_settings(load_topology_text(text), "rw", 0)


def test_two_routes_to_one_component_must_check_it_alike() -> None:
    text = DB.replace("mode: tcp", "mode: http").replace(
        "ROUTE", "{to: db, path_prefix: /a, health: {type: tcp, port: 9000}}, {to: db}"
    )
    with pytest.raises(CannotRunError, match="different health checks"):
        lb_settings(load_topology_text(text), "rw", 0)


# -- choosing a backend -------------------------------------------------------------


def _balancer(route: str) -> tuple[Balancer, list[Backend]]:
    bal = Balancer(_settings(route))
    return bal, bal.routes[0].backends


def _view(**states: tuple[str, float]) -> dict[str, BackendState]:
    return {
        f"db/{k[1:]}": BackendState(
            status=st, since=since, admin="enabled", ejected=False, up_since=None
        )
        for k, (st, since) in states.items()
    }


def test_a_primary_route_sends_nothing_before_a_check_passed() -> None:
    bal, _ = _balancer("{to: db, role: primary}")
    route = bal.routes[0]
    assert bal.choose(route, b"", None) is None  # all unknown: no guess at the primary
    bal.apply_view(_view(i0=("down", 1.0), i1=("up", 2.0), i2=("down", 1.0)))
    assert [bal.choose(route, b"", None).name for _ in range(5)] == ["db/1"] * 5  # type: ignore[union-attr]


def test_a_primary_route_refuses_rather_than_fail_open() -> None:
    bal, backends = _balancer("{to: db, role: primary}")
    route = bal.routes[0]
    bal.apply_view(_view(i0=("down", 1.0), i1=("down", 2.0), i2=("down", 1.0)))
    assert bal.choose(route, b"", None) is None
    bal.apply_view(_view(i0=("up", 3.0), i1=("down", 2.0), i2=("down", 1.0)))
    assert bal.choose(route, b"", [backends[0]]) is None  # tried the primary: no other


def test_a_primary_route_keeps_its_primary_while_it_is_up() -> None:
    bal, backends = _balancer("{to: db, role: primary}")
    route = bal.routes[0]
    # At start, of two answering /primary the one that came up last is taken.
    bal.apply_view(_view(i0=("up", 1.0), i1=("up", 2.0), i2=("down", 1.0)))
    assert {bal.choose(route, b"", None).name for _ in range(4)} == {"db/1"}  # type: ignore[union-attr]
    conn = _Conn()
    backends[1].inflight.add(conn)
    # db/0, a frozen old primary woken with a stale view, answers /primary again: the
    # route stays with db/1 and keeps its connections.
    bal.apply_view(_view(i0=("up", 9.0), i1=("up", 2.0), i2=("down", 1.0)))
    assert {bal.choose(route, b"", None).name for _ in range(4)} == {"db/1"}  # type: ignore[union-attr]
    assert not conn.abandoned
    # db/1 is marked down: its connections are closed, the route moves on.
    bal.apply_view(_view(i0=("down", 10.0), i1=("down", 10.0), i2=("up", 11.0)))
    assert conn.abandoned
    assert bal.choose(route, b"", None).name == "db/2"  # type: ignore[union-attr]
    assert route.chosen is backends[2]


class _Conn:
    def __init__(self) -> None:
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True


def test_a_replica_route_round_robins_and_fails_open_to_every_instance() -> None:
    bal, _ = _balancer("{to: db, role: replica}")
    route = bal.routes[0]
    bal.apply_view(_view(i0=("down", 1.0), i1=("up", 1.0), i2=("up", 1.0)))
    assert {bal.choose(route, b"", None).name for _ in range(6)} == {"db/1", "db/2"}  # type: ignore[union-attr]
    bal.apply_view(_view(i0=("down", 1.0), i1=("down", 2.0), i2=("down", 2.0)))
    # No replica: fail open, reads go to whatever runs, the primary included.
    picked = {bal.choose(route, b"", None).name for _ in range(9)}  # type: ignore[union-attr]
    assert picked == {"db/0", "db/1", "db/2"}


def test_the_routed_example_has_no_spof_and_two_endpoints() -> None:
    from pathlib import Path

    from spofless.analysis import analyze
    from spofless.topology import load_topology

    topology = load_topology(Path(__file__).parents[2] / "examples" / "postgres-routed.yaml")
    assert not analyze(topology).spofs
    rw = lb_settings(topology, "db-rw", 1)
    ro = lb_settings(topology, "db-ro", 0)
    assert rw.routes[0].health.path == "/primary" and not rw.routes[0].fail_open
    assert ro.routes[0].health.path == "/replica?lag=16MB" and ro.routes[0].fail_open
    assert [b.check_port for b in rw.routes[0].backends] == [28018, 28019, 28020]
