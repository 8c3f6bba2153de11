"""Receivers against real servers on 127.0.0.1: a webhook (both bodies, a bearer token
from a file), email through aiosmtpd (login with a password from the environment), a
command; retries after failures, a timeout that bounds a silent server."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from monitor_fixtures import smtp_server, webhook_sink
from pydantic import TypeAdapter

from spofless.monitor import (
    AlertBook,
    Group,
    Notification,
    SecretError,
    Sender,
    group_notifications,
    live_analysis,
    redundancy_alerts,
)
from spofless.topology import Receiver, load_topology_text

pytestmark = pytest.mark.integration

SHOP = """\
name: shop
components:
  db: {kind: postgres, instances: 2, needs: [etcd], port: 5432}
  etcd: {kind: etcd, instances: 3, min_up: majority, port: 2379, peer_port: 2479}
entry: [db]
"""


def receiver(**spec: Any) -> Any:
    return TypeAdapter(Receiver).validate_python(spec)


@pytest.fixture
def notes() -> tuple[Notification, Notification]:
    t = load_topology_text(SHOP)
    base = live_analysis(t, ())
    alerts = redundancy_alerts(base, live_analysis(t, {"instance:etcd/1"}), t)
    book = AlertBook()
    (firing,) = book.update(alerts, time.time())
    (resolved,) = book.update({}, time.time())
    return firing, resolved


def group(note: Notification) -> Group:
    (g,) = group_notifications([note], ["alertname", "component"])
    return g


def test_webhook_alertmanager_body_with_a_token_from_a_file(
    notes: tuple[Notification, Notification], tmp_path: Path
) -> None:
    firing, resolved = notes
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with webhook_sink() as sink:
        sender = Sender(
            receiver(type="webhook", url=sink.url, token_file=str(token)), 0, "shop", "m/0"
        )
        assert asyncio.run(sender.send(group(firing)))
        assert asyncio.run(sender.send(group(resolved)))
        first, second = sink.received
    assert first.headers["Authorization"] == "Bearer s3cret"
    body = first.body
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "RedundancyLost", "component": "db"}
    (alert,) = body["alerts"]
    assert alert["labels"]["severity"] == "error"
    assert alert["labels"]["topology"] == "shop"
    assert alert["annotations"]["summary"].startswith("etcd/1 is down: losing etcd/0 or etcd/2")
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert second.body["status"] == "resolved"
    assert second.body["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"


def test_webhook_plain_json_and_retries_after_a_failure(
    notes: tuple[Notification, Notification],
) -> None:
    firing, _ = notes
    with webhook_sink() as sink:
        # The first attempt goes to a port nothing listens on: refused, then retried.
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()
        bad = Sender(
            receiver(type="webhook", url=f"http://127.0.0.1:{port}/", retries=2, backoff=0.05),
            0,
            "shop",
            "m/0",
        )
        assert not asyncio.run(bad.send(group(firing)))
        good = Sender(receiver(type="webhook", url=sink.url, format="json"), 0, "shop", "m/0")
        assert asyncio.run(good.send(group(firing)))
        (body,) = sink.bodies()
    assert body["monitor"] == "m/0" and body["status"] == "firing"
    (alert,) = body["alerts"]
    assert alert["component"] == "db" and alert["margin"] == 1 and alert["baseline_margin"] == 2
    assert alert["down"] == ["instance:etcd/1"]
    assert ["instance:etcd/0"] in alert["live_spofs"]


def test_a_silent_webhook_is_bounded_by_the_timeout(
    notes: tuple[Notification, Notification],
) -> None:
    firing, _ = notes
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        sender = Sender(
            receiver(
                type="webhook", url=f"http://127.0.0.1:{port}/", timeout=0.3, retries=1, backoff=0
            ),
            0,
            "shop",
            "m/0",
        )
        started = time.monotonic()
        assert not asyncio.run(sender.send(group(firing)))
        assert time.monotonic() - started < 5.0  # two attempts of 0.3 s, not a hang


def test_email_over_smtp_with_login(
    notes: tuple[Notification, Notification], monkeypatch: pytest.MonkeyPatch
) -> None:
    firing, resolved = notes
    monkeypatch.setenv("SMTP_PASSWORD_FOR_TEST", "pw")
    with smtp_server(login=("monitor", "pw")) as box:
        spec = receiver(
            type="email",
            smtp=f"127.0.0.1:{box.port}",
            to=["ops@shop"],
            username="monitor",
            password_env="SMTP_PASSWORD_FOR_TEST",
            **{"from": "monitor@shop"},
        )
        sender = Sender(spec, 0, "shop", "m/0")
        assert asyncio.run(sender.send(group(firing)))
        assert asyncio.run(sender.send(group(resolved)))
        # A wrong password is a failed delivery, not a crash.
        monkeypatch.setenv("SMTP_PASSWORD_FOR_TEST", "wrong")
        once = spec.model_copy(update={"retries": 0, "timeout": 1.0})
        assert not asyncio.run(Sender(once, 0, "shop", "m/0").send(group(firing)))
        first, second = box.messages
    assert first["authenticated"] and second["authenticated"]
    assert first["to"] == ["ops@shop"] and first["from"] == "monitor@shop"
    assert first["subject"] == "[FIRING:1] shop: RedundancyLost db"
    assert "etcd/1 is down" in first["body"]
    assert second["subject"].startswith("[RESOLVED]")


def test_command_gets_the_json_on_stdin(
    notes: tuple[Notification, Notification], tmp_path: Path
) -> None:
    firing, _ = notes
    out = tmp_path / "got.json"
    script = tmp_path / "page.py"
    script.write_text(f"import sys\nopen({str(out)!r}, 'w').write(sys.stdin.read())\n")
    sender = Sender(receiver(type="command", command=f"{sys.executable} {script}"), 0, "s", "m")
    assert asyncio.run(sender.send(group(firing)))
    assert json.loads(out.read_text())["alerts"][0]["component"] == "db"
    failing = Sender(
        receiver(type="command", command=f"{sys.executable} -c 'raise SystemExit(3)'", retries=0),
        0,
        "s",
        "m",
    )
    assert not asyncio.run(failing.send(group(firing)))


def test_a_missing_secret_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read the webhook token from"):
        Sender(
            receiver(type="webhook", url="http://x/", token_file=str(tmp_path / "none")),
            0,
            "s",
            "m",
        )
    with pytest.raises(SecretError, match=r"\$NOT_SET_ANYWHERE, which is not set"):
        Sender(receiver(type="webhook", url="http://x/", token_env="NOT_SET_ANYWHERE"), 0, "s", "m")
