"""The admin API's runtime backends: bad input answered with a 4xx that names it and
changes nothing; what is added and removed is kept over a reload's settings."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry

from spofless.lb import settings_from_flags
from spofless.lb._admin import _route
from spofless.lb._balancer import Balancer
from spofless.lb._changes import overlay
from spofless.lb._controller import Controller
from spofless.lb._messages import BackendState
from spofless.lb._settings import BackendSpec, LbSettings

TOKEN = "t0ken"


def _settings(*backends: str, token: str | None = None) -> LbSettings:
    return settings_from_flags(
        listen="127.0.0.1:0",
        backends=list(backends),
        admin="127.0.0.1:0",
        admin_token=token,
    )


def _post(
    ctl: Controller, path: str, body: object = None, *, raw: bytes | None = None
) -> tuple[int, str]:
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n"
    if ctl.settings.admin_token:
        head = head[:-2] + f"Authorization: Bearer {ctl.settings.admin_token}\r\n\r\n"
    status, _, answer = _route(ctl, CollectorRegistry(), head.encode(), payload)
    return status, answer.decode()


def _names(ctl: Controller) -> list[str]:
    return [b.name for b in ctl.settings.routes[0].backends]


GOOD = {"name": "web/2", "host": "127.0.0.1", "port": 9002}


def test_a_backend_is_added_to_a_route_and_starts_down() -> None:
    ctl = Controller(_settings("127.0.0.1:9000", "127.0.0.1:9001"))
    status, body = _post(ctl, "/routes/default/backends", {**GOOD, "weight": 3})
    assert status == 200, body
    assert json.loads(body)["backend"] == "web/2"
    assert _names(ctl) == ["127.0.0.1:9000", "127.0.0.1:9001", "web/2"]
    assert ctl.settings.backends()["web/2"].weight == 3
    assert str(ctl.status_of("web/2")) == "down"  # serves once its check passed `rise` times
    assert "web/2" in ctl.added


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/routes/nope/backends", GOOD, 404, "no route 'nope'; routes: default"),
        ("/routes/default/backends", None, 400, "send a JSON object with name, host, port"),
        ("/routes/default/backends", [1], 400, "send a JSON object"),
        ("/routes/default/backends", {**GOOD, "port": 0}, 400, "port:"),
        ("/routes/default/backends", {**GOOD, "port": "80"}, 400, "port:"),
        ("/routes/default/backends", {**GOOD, "weight": 999}, 400, "weight:"),
        ("/routes/default/backends", {"name": "x", "host": "h"}, 400, "port: Field required"),
        ("/routes/default/backends", {**GOOD, "backup": True}, 400, "unknown field(s) backup"),
        ("/routes/default/backends", {**GOOD, "name": " "}, 400, "must not be empty"),
        (
            "/routes/default/backends",
            {**GOOD, "name": "127.0.0.1:9000"},
            409,
            "a backend named '127.0.0.1:9000' exists already",
        ),
        ("/backends/nope/remove", None, 404, "no backend 'nope'"),
    ],
)
def test_bad_input_gets_a_4xx_naming_it_and_changes_nothing(
    path: str, body: object, status: int, says: str
) -> None:
    ctl = Controller(_settings("127.0.0.1:9000"))
    before = ctl.settings
    got, answer = _post(ctl, path, body)
    assert (got, says in answer) == (status, True), answer
    assert ctl.settings == before and not ctl.added and not ctl.removing


def test_a_body_that_is_not_json_is_a_400() -> None:
    ctl = Controller(_settings("127.0.0.1:9000"))
    status, answer = _post(ctl, "/routes/default/backends", raw=b"{name: x")
    assert status == 400 and "the body is not JSON" in answer
    assert not ctl.added


def test_adding_needs_the_token_and_post() -> None:
    ctl = Controller(_settings("127.0.0.1:9000", token=TOKEN))
    payload = json.dumps(GOOD).encode()
    head = f"POST /routes/default/backends HTTP/1.1\r\nContent-Length: {len(payload)}\r\n\r\n"
    status, _, _ = _route(ctl, CollectorRegistry(), head.encode(), payload)
    assert status == 401 and not ctl.added
    assert _post(ctl, "/routes/default/backends", GOOD)[0] == 200
    get = b"GET /routes/default/backends HTTP/1.1\r\n" + f"Authorization: Bearer {TOKEN}".encode()
    assert _route(ctl, CollectorRegistry(), get + b"\r\n\r\n")[0] == 405


def test_the_last_primary_of_a_route_is_not_removed() -> None:
    ctl = Controller(_settings("127.0.0.1:9000", "127.0.0.1:9001"))

    async def remove_both() -> tuple[tuple[int, str], tuple[int, str]]:
        first = _post(ctl, "/backends/127.0.0.1:9000/remove")
        second = _post(ctl, "/backends/127.0.0.1:9001/remove")
        for task in list(ctl.removing.values()):
            task.cancel()
        return first, second

    first, second = asyncio.run(remove_both())
    assert first[0] == 202 and json.loads(first[1])["removing"] is True
    assert ctl.views["127.0.0.1:9000"].admin == "drain"
    # The first is on its way out: the second would leave the route empty.
    assert second[0] == 409 and "cannot be removed" in second[1], second
    assert ctl.views["127.0.0.1:9001"].admin == "enabled"


def test_a_removal_drains_then_removes() -> None:
    ctl = Controller(_settings("127.0.0.1:9000"))

    async def add_then_remove() -> tuple[int, int]:
        added = _post(ctl, "/routes/default/backends", GOOD)[0]
        removed = _post(ctl, "/backends/web%2F2/remove")[0]
        assert ctl.views["web/2"].admin == "drain" and "web/2" in ctl.removing
        assert _post(ctl, "/backends/web%2F2/enable")[0] == 409  # being removed
        await asyncio.wait_for(ctl.removing["web/2"], 5)  # no worker: nothing in flight
        return added, removed

    assert asyncio.run(add_then_remove()) == (200, 202)
    assert "web/2" not in ctl.views and "web/2" not in ctl.settings.backends()
    assert not ctl.added and "web/2" in ctl.removed


def test_runtime_changes_are_applied_over_new_settings() -> None:
    base = _settings("127.0.0.1:9000", "127.0.0.1:9001")
    spec = BackendSpec(name="web/2", host="127.0.0.1", port=9002)
    out = overlay(base, {"web/2": ("default", spec)}, {"127.0.0.1:9001"})
    assert [b.name for b in out.routes[0].backends] == ["127.0.0.1:9000", "web/2"]
    # A backend the new settings name themselves stays as they have it.
    same = BackendSpec(name="127.0.0.1:9000", host="127.0.0.1", port=9000, weight=7)
    kept = overlay(base, {same.name: ("default", same)}, set())
    assert kept.backends()["127.0.0.1:9000"].weight == 1
    with pytest.raises(ValueError, match="at least 1 item"):
        overlay(base, {}, {"127.0.0.1:9000", "127.0.0.1:9001"})


def _state(status: str, admin: str = "enabled") -> BackendState:
    return BackendState(status=status, since=1.0, admin=admin, ejected=False, up_since=None)


def test_a_worker_takes_new_routes_in_place() -> None:
    """A worker's balancer keeps each backend it has (state, counters), starts a new one
    from the view that came with the routes, and drops a removed one's pooled connections."""
    base = _settings("127.0.0.1:9000", "127.0.0.1:9001")
    bal = Balancer(base)
    bal.apply_view({n: _state("up") for n in base.backends()})
    kept = bal.backends["127.0.0.1:9000"]
    kept.requests = 7
    gone = bal.backends["127.0.0.1:9001"]
    pooled = _Closable()
    gone.idle = [pooled]  # type: ignore[list-item]
    spec = BackendSpec(name="web/2", host="127.0.0.1", port=9002)
    new = overlay(base, {"web/2": ("default", spec)}, {"127.0.0.1:9001"})
    bal.update_routes(new, {"127.0.0.1:9000": _state("up"), "web/2": _state("down")})
    assert bal.backends["127.0.0.1:9000"] is kept and kept.requests == 7
    assert set(bal.backends) == {"127.0.0.1:9000", "web/2"}
    assert bal.backends["web/2"].status == "down"  # not served before its check passes
    assert [b.name for b in bal.routes[0].live] == ["127.0.0.1:9000"]
    assert pooled.closed and gone.idle == []
    bal.apply_view({"web/2": _state("up")})
    assert {b.name for b in bal.routes[0].live} == {"127.0.0.1:9000", "web/2"}


class _Closable:
    closed = False

    def close(self) -> None:
        self.closed = True
