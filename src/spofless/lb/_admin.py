"""The admin API, on its own listener: status, drain/disable/enable, backends added and
removed at runtime, Prometheus metrics.

    GET  /status                        JSON: every backend's state and counters, and
                                        each route's serving backends (on its backups?)
    POST /backends/<name>/drain         no new requests, open ones finish
    POST /backends/<name>/disable       out of rotation
    POST /backends/<name>/enable        back in rotation
    POST /routes/<route>/backends       add a backend to a route; a JSON body:
                                        {"name", "host", "port", "weight"?, "check_port"?}
    POST /backends/<name>/remove        drain it, then remove it from every route
    GET  /metrics                       Prometheus text format

A POST answers {"backend", "admin", "view_seq"}: the change is the view numbered
`view_seq`; once /status's `workers_view_seq` reaches it, every worker applied it
and the counters /status shows were taken after it (a drain is complete when the
backend's `active` is then 0: `spofless rollout` waits for exactly that).

An added backend starts down and serves once its route's health check passed `rise`
times (/status: `"added": true`, then `"status": "up"`), ramping up over the route's
slow start. A removal answers 202 at once: the backend is drained (`"removing":
true`) and leaves /status once no request to it is open, or after `drain_timeout`.
Both survive a reload (SIGHUP), as the admin states do; a restart starts from the
file. Bad input gets a 4xx naming what is wrong and changes nothing: 400 for a body
that is not such an object, 404 for an unknown route or backend, 409 for a name in
use, the last primary of a route, a route sending to one primary (`role: primary`)
or mode redis, 413 for a body over 16 KiB.

With an admin token set, every request needs `Authorization: Bearer <token>`;
a token is required when the API listens on anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from pydantic import ValidationError

from spofless.lb._backend import LATENCY_BUCKETS
from spofless.lb._changes import Refused
from spofless.lb._handover import route_keys
from spofless.lb._messages import BackendStats
from spofless.lb._policy import slow_start_factor
from spofless.lb._settings import BackendSpec

if TYPE_CHECKING:
    from spofless.lb._controller import Controller

_MAX_HEAD = 16384
_MAX_BODY = 16384


async def start_admin(ctl: Controller) -> asyncio.AbstractServer:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctl))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                payload = await reader.readexactly(length) if 0 < length <= _MAX_BODY else b""
            if length > _MAX_BODY:
                status, ctype, body = 413, "text/plain", b"body over 16 KiB\n"
            elif length < 0:
                status, ctype, body = 400, "text/plain", b"bad Content-Length\n"
            else:
                status, ctype, body = _route(ctl, registry, head, payload)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, ctype.encode(), len(body))
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    s = ctl.settings
    assert s.admin_port is not None
    return await asyncio.start_server(
        handle, s.admin_host or "127.0.0.1", s.admin_port, limit=_MAX_HEAD
    )


def _content_length(head: bytes) -> int:
    """The request's Content-Length (0 without one), -1 when it is not a number."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else -1
    return 0


def _route(
    ctl: Controller, registry: CollectorRegistry, head: bytes, payload: bytes = b""
) -> tuple[int, str, bytes]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3:
        return 400, "text/plain", b"bad request\n"
    method, path = parts[0], parts[1].split("?", 1)[0]
    token = ctl.settings.admin_token
    if token:
        auth = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in lines[1:]
                if ln.lower().startswith("authorization:")
            ),
            "",
        )
        if not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
            return 401, "text/plain", b"unauthorized: send Authorization: Bearer <token>\n"
    if method == "GET" and path == "/status":
        return 200, "application/json", json.dumps(status(ctl), indent=1).encode() + b"\n"
    if method == "GET" and path == "/metrics":
        return 200, "text/plain; version=0.0.4", generate_latest(registry)
    seg = path.strip("/").split("/")
    if len(seg) == 3 and seg[0] == "routes" and seg[2] == "backends":
        if method != "POST":
            return 405, "text/plain", b"use POST\n"
        return _add(ctl, unquote(seg[1]), payload)
    if len(seg) == 3 and seg[0] == "backends" and seg[2] == "remove":
        if method != "POST":
            return 405, "text/plain", b"use POST\n"
        name = unquote(seg[1])
        try:
            ctl.remove_backend(name)
        except Refused as exc:
            return exc.status, "text/plain", f"{exc}\n".encode()
        answer = {"backend": name, "admin": "drain", "removing": True, "view_seq": ctl.view_seq}
        return 202, "application/json", json.dumps(answer).encode()
    if len(seg) == 3 and seg[0] == "backends" and seg[2] in ("drain", "disable", "enable"):
        if method != "POST":
            return 405, "text/plain", b"use POST\n"
        name = unquote(seg[1])
        if name not in ctl.views:
            return 404, "text/plain", f"no backend {name!r}\n".encode()
        if name in ctl.removing:
            return 409, "text/plain", f"{name} is being removed\n".encode()
        ctl.set_admin(name, "enabled" if seg[2] == "enable" else seg[2])
        # The view carrying the change: once `workers_view_seq` in /status reaches it,
        # every worker has it, and the counters there were taken after it.
        answer = {"backend": name, "admin": ctl.views[name].admin, "view_seq": ctl.view_seq}
        return 200, "application/json", json.dumps(answer).encode()
    return 404, "text/plain", b"not found\n"


_ADD_FIELDS = ("name", "host", "port", "weight", "check_port")


def _add(ctl: Controller, route: str, payload: bytes) -> tuple[int, str, bytes]:
    """POST /routes/<route>/backends: the body checked, then `Controller.add_backend`."""
    try:
        body = json.loads(payload or b"null")
    except ValueError as exc:
        return 400, "text/plain", f"the body is not JSON: {exc}\n".encode()
    if not isinstance(body, dict):
        fields = ", ".join(_ADD_FIELDS)
        return 400, "text/plain", f"send a JSON object with {fields}\n".encode()
    unknown = sorted(set(body) - set(_ADD_FIELDS))
    if unknown:
        return 400, "text/plain", f"unknown field(s) {', '.join(unknown)}\n".encode()
    try:
        spec = BackendSpec.model_validate(body, strict=True)
    except ValidationError as exc:
        lines = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return 400, "text/plain", f"{lines}\n".encode()
    if not spec.name.strip() or not spec.host.strip():
        return 400, "text/plain", b"name and host must not be empty\n"
    try:
        ctl.add_backend(route, spec)
    except Refused as exc:
        return exc.status, "text/plain", f"{exc}\n".encode()
    answer = {"route": route, "backend": spec.name, "admin": "enabled", "view_seq": ctl.view_seq}
    return 200, "application/json", json.dumps(answer).encode()


def status(ctl: Controller) -> dict[str, Any]:
    s = ctl.settings
    totals = ctl.totals()
    now = time.time()
    specs = s.backends()
    ramps = {b.name: s.slow_start_of(r) for r in s.routes for b in r.backends}
    backends: dict[str, Any] = {}
    for name, view in ctl.views.items():
        m = ctl._monitor_of(name)
        health = m.health(name) if m else None
        last = health.last_result if health else None
        spec = specs[name]
        backends[name] = {
            "status": str(ctl.status_of(name)),
            "admin": view.admin,
            "ejected": view.ejected_until > now,
            "ejections": view.ejections,
            "backup": spec.backup,
            "added": name in ctl.added,  # through the admin API
            "removing": name in ctl.removing,
            "weight": spec.weight,
            # Its weight now, slow start applied (whether it is eligible or not).
            "weight_now": round(
                spec.weight * slow_start_factor(view.up_since, now, ramps[name]), 3
            ),
            "since": health.since if health else None,
            "last_check": None
            if last is None
            else {"ok": last.ok, "detail": last.detail, "duration": round(last.duration, 6)},
            **asdict(totals.get(name, BackendStats())),
        }
    return {
        "instance": s.instance,
        "mode": s.mode,
        "listen": f"{s.listen_host}:{ctl.port}",
        "workers": [w.proc.pid for w in ctl.workers],
        "view_seq": ctl.view_seq,
        # The oldest view any serving worker had applied when it last sent its counters.
        "workers_view_seq": min((w.view_seq for w in ctl.workers), default=ctl.view_seq),
        "backends": backends,
        "routes": {
            key: {
                "backends": [b.name for b in route.backends if not b.backup],
                "backups": [b.name for b in route.backends if b.backup],
                "serving": list(ctl.tiers[key].serving),
                "on_backup": ctl.tiers[key].on_backup,
                "since": ctl.tiers[key].since or None,
                "failovers": ctl.tiers[key].failovers,
                "failbacks": ctl.tiers[key].failbacks,
            }
            for key, route in zip(route_keys(s.routes), s.routes, strict=True)
        },
    }


class _Collector:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        ctl = self.ctl
        totals = ctl.totals()
        req = CounterMetricFamily(
            "spofless_lb_responses",
            "Responses by backend and status class",
            labels=["backend", "code"],
        )
        retries = CounterMetricFamily(
            "spofless_lb_retries", "Retries away from a backend", labels=["backend"]
        )
        conn_fail = CounterMetricFamily(
            "spofless_lb_connect_failures", "Failed connects to a backend", labels=["backend"]
        )
        spliced = CounterMetricFamily(
            "spofless_lb_spliced",
            "tcp connections handed to splice(2) for bulk data",
            labels=["backend"],
        )
        ejections = CounterMetricFamily(
            "spofless_lb_ejections", "Outlier ejections", labels=["backend"]
        )
        up = GaugeMetricFamily(
            "spofless_lb_backend_up", "1 when the backend is up", labels=["backend"]
        )
        active = GaugeMetricFamily(
            "spofless_lb_in_flight", "Requests in flight", labels=["backend"]
        )
        on_backup = GaugeMetricFamily(
            "spofless_lb_route_on_backup",
            "1 while the route sends to its backups (no primary can take requests)",
            labels=["route"],
        )
        handovers = CounterMetricFamily(
            "spofless_lb_route_handovers",
            "Hand-overs of a route to its backups (failover) and back (failback)",
            labels=["route", "to"],
        )
        for key, tier in ctl.tiers.items():
            on_backup.add_metric([key], 1.0 if tier.on_backup else 0.0)
            handovers.add_metric([key, "backups"], tier.failovers)
            handovers.add_metric([key, "primaries"], tier.failbacks)
        latency = HistogramMetricFamily(
            "spofless_lb_request_duration_seconds",
            "Time to a complete response",
            labels=["backend"],
        )
        for name, view in ctl.views.items():
            t = totals.get(name, BackendStats())
            for i, cls in enumerate(("none", "1xx", "2xx", "3xx", "4xx", "5xx")):
                req.add_metric([name, cls], t.responses[i])
            retries.add_metric([name], t.retries)
            conn_fail.add_metric([name], t.connect_failures)
            spliced.add_metric([name], t.spliced)
            ejections.add_metric([name], view.ejections)
            up.add_metric([name], 1.0 if str(ctl.status_of(name)) != "down" else 0.0)
            active.add_metric([name], t.active)
            buckets = t.buckets
            cum, acc = [], 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                acc += n
                cum.append((str(bound) if bound != float("inf") else "+Inf", acc))
            latency.add_metric([name], cum, t.latency_sum)
        yield from (req, retries, conn_fail, spliced, ejections, up, active, latency)
        yield from (on_backup, handovers)
