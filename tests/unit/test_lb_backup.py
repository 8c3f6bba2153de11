"""Active-passive routes and slow start: the pure selection, the hand-over rule, the
settings and topology fields (no sockets, no processes; the clock is given)."""

from __future__ import annotations

import pytest

from spofless.analysis import analyze
from spofless.lb import lb_settings, settings_from_flags
from spofless.lb._backend import Backend
from spofless.lb._balancer import Balancer, Route
from spofless.lb._handover import Handover, RouteTier, follow, route_keys, serving
from spofless.lb._messages import AdminChange, BackendState, BackendView, merge
from spofless.lb._policy import OutlierPolicy
from spofless.lb._settings import LbSettings, RouteSpec
from spofless.topology import CannotRunError, LbOptions, TopologyError, load_topology_text

# -- the rule ----------------------------------------------------------------------


def test_serving_is_the_usable_primaries_else_the_usable_backups() -> None:
    up = {"p0", "p1", "b0"}
    usable = up.__contains__
    assert serving(["p0", "p1"], ["b0"], usable) == ["p0", "p1"]
    up -= {"p0"}
    assert serving(["p0", "p1"], ["b0"], usable) == ["p1"]
    up -= {"p1"}
    assert serving(["p0", "p1"], ["b0", "b1"], usable) == ["b0"]
    up -= {"b0"}
    assert serving(["p0", "p1"], ["b0"], usable) == []
    assert serving(["p0"], [], usable) == []  # no backups: as before


# -- the worker's choice -------------------------------------------------------------


def _flags(backends: int = 2, backups: int = 1, **options: object) -> LbSettings:
    return settings_from_flags(
        listen="127.0.0.1:0",
        backends=[f"127.0.0.1:{9000 + i}" for i in range(backends)],
        backups=[f"127.0.0.1:{9100 + i}" for i in range(backups)],
        options=LbOptions.model_validate(options),
    )


def _state(status: str, *, admin: str = "enabled", up_since: float | None = None) -> BackendState:
    return BackendState(status=status, since=0.0, admin=admin, ejected=False, up_since=up_since)


class _Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _balancer(settings: LbSettings, clock: _Clock | None = None) -> tuple[Balancer, Route]:
    bal = Balancer(settings, clock=clock or _Clock())
    return bal, bal.routes[0]


def _picks(bal: Balancer, route: Route, n: int, tried: list[Backend] | None = None) -> list[str]:
    out = []
    for _ in range(n):
        b = bal.choose(route, b"", tried)
        out.append("-" if b is None else b.name)
    return out


P0, P1, B0 = "127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9100"


def test_backups_get_nothing_while_a_primary_can_take_requests() -> None:
    bal, route = _balancer(_flags())
    assert set(_picks(bal, route, 10)) == {P0, P1}  # unchecked yet: fail open trusts them
    bal.apply_view({P0: _state("down"), P1: _state("up"), B0: _state("up")})
    assert set(_picks(bal, route, 10)) == {P1}


@pytest.mark.parametrize("why", ["down", "drain", "disabled", "ejected"])
def test_backups_serve_when_no_primary_can_and_the_primaries_take_back(why: str) -> None:
    clock = _Clock()
    bal, route = _balancer(_flags(slow_start=0), clock)
    gone = BackendState(
        status="down" if why == "down" else "up",
        since=0.0,
        admin=why if why in ("drain", "disabled") else "enabled",
        ejected=why == "ejected",
        up_since=None,
    )
    bal.apply_view({P0: gone, P1: gone, B0: _state("up")})
    assert set(_picks(bal, route, 10)) == {B0}
    bal.apply_view({P0: gone, P1: _state("up"), B0: _state("up")})
    assert set(_picks(bal, route, 10)) == {P1}


def test_a_refused_primary_hands_its_retry_to_the_backup_at_once() -> None:
    """kill -9 of both primaries: each worker marks a refusing backend down itself, so
    the retry of a request that found both refusing goes to the backup."""
    bal, route = _balancer(_flags())
    bal.apply_view({P0: _state("up"), P1: _state("up"), B0: _state("up")})
    p0, p1, b0 = route.backends
    bal.mark_down_locally(p0, "connect: refused")
    assert _picks(bal, route, 1, [p0]) == [P1]
    bal.mark_down_locally(p1, "connect: refused")
    assert _picks(bal, route, 1, [p0, p1]) == [B0]
    assert route.live == [b0]


def test_fail_open_tries_the_primaries_before_the_backups() -> None:
    bal, route = _balancer(_flags())
    bal.apply_view({P0: _state("down"), P1: _state("down"), B0: _state("down")})
    p0, p1, b0 = route.backends
    assert set(_picks(bal, route, 6)) == {P0, P1}
    assert _picks(bal, route, 1, [p0, p1]) == [B0]
    assert _picks(bal, route, 1, [p0, p1, b0]) == ["-"]


def test_a_timed_out_primary_still_up_is_retried_on_the_other_primary_first() -> None:
    bal, route = _balancer(_flags())
    bal.apply_view({P0: _state("up"), P1: _state("up"), B0: _state("up")})
    p0, p1, _ = route.backends
    assert _picks(bal, route, 1, [p0]) == [P1]
    # Both primaries tried and still up: fail open goes on to the backup.
    assert _picks(bal, route, 1, [p0, p1]) == [B0]


# -- slow start ------------------------------------------------------------------------


def test_slow_start_ramps_the_share_of_a_backend_back_up_linearly() -> None:
    clock = _Clock(1000.0)
    bal, route = _balancer(_flags(backends=2, backups=0, slow_start=10), clock)
    bal.apply_view({P0: _state("up"), P1: _state("up", up_since=1000.0)})
    shares = []
    for elapsed in (0.0, 2.5, 5.0, 10.0, 20.0):
        clock.now = 1000.0 + elapsed
        bal.refresh_weights(clock())
        picks = _picks(bal, route, 1100)
        shares.append(round(picks.count(P1) / picks.count(P0), 2))
    # 10 % of its weight at first, then elapsed / window, full from the window's end.
    assert shares == [0.1, 0.25, 0.5, 1.0, 1.0]


def test_a_route_slow_start_overrides_the_balancers() -> None:
    settings = _flags(backends=2, backups=0, slow_start=10)
    route = settings.routes[0].model_copy(update={"slow_start": 2.0})
    settings = settings.model_copy(update={"routes": (route,)})
    clock = _Clock(1000.0)
    bal, r = _balancer(settings, clock)
    bal.apply_view({P0: _state("up"), P1: _state("up", up_since=999.0)})
    assert [b.weight for b in r.backends] == [1.0, 0.5]


def test_enabling_a_drained_backend_readmits_it_with_slow_start() -> None:
    policy = OutlierPolicy(5, 1.0, 30.0)
    v = BackendView(last_change=0.0)
    v = merge(v, AdminChange("drain"), 100.0, policy)
    assert v.up_since is None
    v = merge(v, AdminChange("enabled"), 130.0, policy)
    assert v.up_since == 130.0  # the ramp starts at the readmission
    assert merge(v, AdminChange("enabled"), 140.0, policy).up_since == 130.0  # no restart
    v = merge(v, AdminChange("disabled"), 150.0, policy)
    assert merge(v, AdminChange("enabled"), 160.0, policy).up_since == 160.0


# -- the controller's view of the hand-overs ------------------------------------------------


def test_follow_reports_the_failover_and_the_failback_once_each() -> None:
    route = _flags().routes[0]
    tier = RouteTier()
    view = {P0: _state("up"), P1: _state("up"), B0: _state("up")}
    tier, h = follow("default", route, view, tier, 1.0)
    assert h is None and tier.serving == (P0, P1) and not tier.on_backup
    view = {P0: _state("down"), P1: _state("down"), B0: _state("up")}
    tier, h = follow("default", route, view, tier, 2.0)
    assert h == Handover("default", True, (B0,), ((P0, "down"), (P1, "down")))
    assert h.sentence() == (
        f"route default failed over to its backups {B0} (primaries: {P0} down, {P1} down)"
    )
    assert (tier.on_backup, tier.since, tier.failovers) == (True, 2.0, 1)
    assert follow("default", route, view, tier, 3.0) == (tier, None)  # no second event
    # Nothing serves at all: the route stays on its backups, no hand-over.
    tier, h = follow("default", route, {**view, B0: _state("down")}, tier, 4.0)
    assert h is None and tier.on_backup and tier.serving == ()
    view = {P0: _state("down"), P1: _state("up"), B0: _state("up")}
    tier, h = follow("default", route, view, tier, 5.0)
    assert h is not None and not h.to_backup and h.serving == (P1,)
    assert h.sentence() == f"route default failed back to its primaries {P1} (backups: {B0} up)"
    assert (tier.on_backup, tier.failovers, tier.failbacks) == (False, 1, 1)


def test_a_route_without_fail_open_trusts_no_unchecked_primary() -> None:
    route = _flags().routes[0].model_copy(update={"fail_open": False})
    view = {P0: _state("unknown"), P1: _state("unknown"), B0: _state("up")}
    tier, h = follow("default", route, view, RouteTier(), 1.0)
    assert h is not None and h.to_backup and tier.serving == (B0,)


def test_route_keys_tell_two_routes_to_one_target_apart() -> None:
    settings = _flags()
    r = settings.routes[0]
    assert route_keys([r]) == ["default"]
    other = r.model_copy(update={"name": "api"})
    assert route_keys([r, other, r]) == ["default#0", "api", "default#2"]


# -- settings -----------------------------------------------------------------------------


def test_flags_mark_the_backups() -> None:
    settings = _flags(backends=1, backups=2)
    assert [b.backup for b in settings.routes[0].backends] == [False, True, True]


def test_a_route_of_backups_only_is_refused() -> None:
    with pytest.raises(CannotRunError, match="at least one --backend"):
        settings_from_flags(listen="127.0.0.1:0", backends=[], backups=["127.0.0.1:9"])
    backend = {"name": "a", "host": "127.0.0.1", "port": 9, "backup": True}
    with pytest.raises(ValueError, match="every backend is a backup"):
        RouteSpec.model_validate({"name": "r", "backends": [backend]})
    primary = {**backend, "name": "b", "backup": False}
    with pytest.raises(ValueError, match="takes no backups"):
        RouteSpec.model_validate({"name": "r", "backends": [primary, backend], "exclusive": True})


# -- the topology ---------------------------------------------------------------------------

WEB = """\
name: ap
security: {tls: false}
components:
  web: {kind: service, instances: 3, port: 7000}
  lb:
    kind: load_balancer
    instances: 2
    port: 6000
    routes:
      - ROUTE
entry: [lb]
"""


def test_a_route_names_its_backup_instances_and_its_slow_start() -> None:
    topology = load_topology_text(WEB.replace("ROUTE", "{to: web, backup: [2], slow_start: 10s}"))
    (route,) = lb_settings(topology, "lb", 0).routes
    assert [(b.name, b.backup) for b in route.backends] == [
        ("web/0", False),
        ("web/1", False),
        ("web/2", True),
    ]
    assert route.slow_start == 10.0
    options = "\n    lb: {slow_start: 2m}"
    text = WEB.replace("ROUTE", "{to: web}").replace("    routes:", options[1:] + "\n    routes:")
    assert lb_settings(load_topology_text(text), "lb", 0).options.slow_start == 120.0


def test_a_backup_instance_is_still_redundancy_for_the_analysis() -> None:
    # web has 3 instances, one a backup of the route: losing any one still leaves the
    # route served, so no instance of web is a single point of failure.
    topology = load_topology_text(WEB.replace("ROUTE", "{to: web, backup: [1, 2]}"))
    assert not [s for s in analyze(topology).spofs if "web" in s]


@pytest.mark.parametrize(
    ("route", "line", "message"),
    [
        ("{to: web, backup: [0, 1, 2]}", 10, "every instance of web is a backup"),
        ("{to: web, backup: [3]}", 10, "instance 3 of web does not exist"),
        ("{to: web, backup: [1], weights: [0, 1, 0]}", 10, "has weight 0"),
        ("{to: web, backup: [1, 1]}", 10, "names an instance twice"),
        ("{to: web, backup: [-1]}", 10, "must be at least 0"),
        ("{to: web, slow_start: 2h}", 10, "must be at most 3600"),
        ("{to: web, slow_start: soon}", 10, "duration 'soon'"),
    ],
)
def test_bad_backup_fields_are_errors_at_their_line(route: str, line: int, message: str) -> None:
    with pytest.raises(TopologyError, match=message) as err:
        load_topology_text(WEB.replace("ROUTE", route), source="ap.yaml")
    assert f"ap.yaml:{line}:" in str(err.value)


def test_backup_does_not_go_with_a_primary_role_or_mode_redis() -> None:
    text = """\
name: x
security: {tls: false}
components:
  db: {kind: postgres, instances: 3, port: 5432, api_port: 8008}
  rw: {kind: load_balancer, instances: 2, mode: tcp, port: 6000, routes: [ROUTE]}
entry: [rw]
"""
    with pytest.raises(TopologyError, match="does not go with role: primary"):
        load_topology_text(text.replace("ROUTE", "{to: db, role: primary, backup: [2]}"))
    redis = text.replace("mode: tcp", "mode: redis")
    with pytest.raises(TopologyError, match="belong to routes in mode http or tcp"):
        load_topology_text(redis.replace("ROUTE", "{to: db, backup: [2]}"))


def test_two_routes_to_one_target_must_agree_on_its_backups() -> None:
    routes = "{to: web, path_prefix: /a, backup: [2]}\n      - {to: web}"
    topology = load_topology_text(WEB.replace("ROUTE", routes))
    with pytest.raises(CannotRunError, match="different health checks or roles"):
        lb_settings(topology, "lb", 0)
