"""The monitor's view of active-passive routes: hand-over events and the alert (pure)."""

from __future__ import annotations

from typing import Any

from spofless.health import Detector
from spofless.monitor import FlapDamper, LiveState
from spofless.monitor._probe import _lb
from spofless.monitor._routes import backup_alerts
from spofless.monitor._state import InstanceView
from spofless.topology import load_topology_text

SHOP = """\
name: shop
components:
  web: {kind: service, instances: 3, port: 7000}
  lb: {kind: load_balancer, instances: 2, port: 6000, routes: [{to: web, backup: [2]}]}
entry: [lb]
"""


def _status(on_backup: bool, serving: list[str]) -> dict[str, Any]:
    up = {"status": "up", "admin": "enabled", "ejected": False}
    route = {
        "backends": ["web/0", "web/1"],
        "backups": ["web/2"],
        "serving": serving,
        "on_backup": on_backup,
    }
    plain = {"backends": ["x/0"], "backups": [], "serving": ["x/0"], "on_backup": False}
    return {"backends": {"web/0": up}, "routes": {"web": route, "x": plain}}


def _state() -> LiveState:
    s = LiveState(
        load_topology_text(SHOP),
        ["lb/0", "lb/1"],
        me="monitor/0",
        fall=1,
        rise=1,
        damper=FlapDamper(60, 4),
        max_lag=100,
    )
    s.views["lb/0"] = InstanceView("lb/0", Detector(1, 1))
    return s


def test_only_routes_with_backups_are_watched() -> None:
    assert list(_lb(_status(False, ["web/0"])).facts["routes"]) == ["web"]
    assert "routes" not in _lb({"backends": {}}).facts


def test_a_failover_and_a_failback_are_one_event_each() -> None:
    s = _state()
    assert s.observe("lb/0", _lb(_status(False, ["web/0", "web/1"])), 0.0) == []
    (over,) = s.observe("lb/0", _lb(_status(True, ["web/2"])), 1.0)
    assert (over.kind, over.subject, over.severity) == ("route_failover", "lb/0", "warning")
    assert over.message == (
        "lb/0: route web failed over to its backups (web/2 serving): no primary "
        "(web/0, web/1) can take requests"
    )
    assert s.observe("lb/0", _lb(_status(True, ["web/2"])), 2.0) == []
    (back,) = s.observe("lb/0", _lb(_status(False, ["web/1"])), 3.0)
    assert (back.kind, back.severity) == ("route_failback", "info")
    assert back.message == "lb/0: route web failed back to its primaries (web/1)"


def test_the_first_look_is_not_a_hand_over() -> None:
    s = _state()
    assert s.observe("lb/0", _lb(_status(True, ["web/2"])), 0.0) == []


def test_an_alert_fires_while_a_route_is_on_its_backups() -> None:
    s = _state()
    s.observe("lb/0", _lb(_status(True, ["web/2"])), 0.0)
    (alert,) = backup_alerts(s.views.values()).values()
    assert (alert.key, alert.alertname, alert.component) == ("backup/lb/web", "RouteOnBackup", "lb")
    assert alert.severity == "error"  # one backup left: losing it takes the route down
    assert alert.summary == (
        "lb: route web is on its backups (lb/0): no primary (web/0, web/1) can take "
        "requests; losing web/2 now takes the route down"
    )
    assert alert.cuts == (("instance:web/2",),)
    s.observe("lb/0", _lb(_status(True, [])), 1.0)
    assert backup_alerts(s.views.values())["backup/lb/web"].severity == "critical"
    s.observe("lb/0", _lb(_status(False, ["web/0"])), 2.0)
    assert backup_alerts(s.views.values()) == {}


def test_a_balancer_that_does_not_answer_drops_out_of_the_alert() -> None:
    s = _state()
    s.observe("lb/0", _lb(_status(True, ["web/2"])), 0.0)
    s.views["lb/0"].state = "down"
    assert backup_alerts(s.views.values()) == {}
