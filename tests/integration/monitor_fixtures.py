"""Receivers a monitor test listens with: a real webhook server and a real SMTP server.

Both listen on 127.0.0.1, on a port the OS picks, and record what they got with
the time it arrived; both are stopped by their context managers however the
test ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from free_ports import free_port


@dataclass
class Received:
    at: float
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class WebhookSink:
    """Every POST received, its JSON body and headers; `hold` makes it not answer."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Called with each body before answering; a number > 0 sleeps that long first, < 0
    # drops the request (no answer, not recorded).
    hold: Callable[[dict[str, Any]], float] = lambda body: 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received]

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every body (Alertmanager format), optionally of one status."""
        out = [a for b in self.bodies() for a in b.get("alerts", [])]
        return [a for a in out if status is None or a["status"] == status]


@contextlib.contextmanager
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            delay = sink.hold(body)
            if delay < 0:  # dropped: never answered, not counted
                self.close_connection = True
                return
            if delay:
                time.sleep(delay)
            with sink.lock:
                sink.received.append(Received(time.time(), body, dict(self.headers)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Mailbox:
    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subjects(self) -> list[str]:
        with self.lock:
            return [m["subject"] for m in self.messages]


@contextlib.contextmanager
def smtp_server(login: tuple[str, str] | None = None) -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message; with `login`,
    it accepts AUTH with that user and password only."""
    from email import message_from_bytes

    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox(port=free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = message_from_bytes(envelope.content)
            with box.lock:
                box.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "subject": msg["Subject"],
                        "body": msg.get_payload(decode=True).decode(),
                        "at": time.time(),
                        "authenticated": bool(session.authenticated),
                    }
                )
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        ok = (
            login is not None
            and isinstance(auth, LoginPassword)
            and (auth.login.decode(), auth.password.decode()) == login
        )
        return AuthResult(success=ok)

    extra: dict[str, Any] = {}
    if login is not None:
        # AUTH offered over plain TCP (loopback only); each message records whether its
        # session logged in.
        extra = {"authenticator": authenticate, "auth_require_tls": False}
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port, **extra)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
