"""Receivers: where a notification goes (webhook, email over SMTP, a command).

    group_notifications(notes, group_by) -> [Group]      Alertmanager's grouping, pure
    webhook_body(group, ...) / plain_body(group, ...)    the JSON bodies, pure
    Sender(receiver, secrets).send(group, ...) -> bool   one delivery, with its retries

A webhook POSTs Alertmanager's webhook body (version 4: what every
Alertmanager receiver accepts) or spofless's plain JSON; an email is one mail
per group over SMTP (STARTTLS and login when configured); a command gets the
plain JSON on its standard input. Each attempt is bounded by the receiver's
`timeout`; `retries` more attempts follow, `backoff` apart (doubling).
Secrets are read once at start from the file or environment variable the
topology names (`SecretError` when missing), never from the topology itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from spofless.errors import SpoflessError
from spofless.monitor._alerts import Notification
from spofless.topology import CommandReceiver, EmailReceiver, Receiver, WebhookReceiver

logger = logging.getLogger(__name__)

# Alertmanager's "not ended yet".
ZERO_TIME = "0001-01-01T00:00:00Z"


class SecretError(SpoflessError):
    """A receiver's secret cannot be read from where the topology says it is."""


@dataclass(frozen=True, slots=True)
class Group:
    """Notifications sent together: the same values of the `group_by` labels."""

    labels: dict[str, str]
    notes: tuple[Notification, ...]

    @property
    def status(self) -> str:
        return "firing" if any(n.status == "firing" for n in self.notes) else "resolved"

    @property
    def key(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return "{}:{" + inner + "}"


def group_notifications(notes: Sequence[Notification], group_by: Sequence[str]) -> list[Group]:
    """Notifications grouped by their labels in `group_by`, groups in first-seen order."""
    groups: dict[tuple[str, ...], list[Notification]] = {}
    for note in notes:
        labels = note.alert.labels
        groups.setdefault(tuple(labels[k] for k in group_by), []).append(note)
    return [Group(dict(zip(group_by, key, strict=True)), tuple(ns)) for key, ns in groups.items()]


def _time(t: float | None) -> str:
    if t is None:
        return ZERO_TIME
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _common(dicts: Sequence[dict[str, str]]) -> dict[str, str]:
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_body(group: Group, receiver: str, topology: str, url: str) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for one group."""
    alerts: list[dict[str, Any]] = []
    for n in group.notes:
        a = n.alert
        labels = {**a.labels, "topology": topology}
        annotations = {
            "summary": a.summary,
            "margin": str(a.margin),
            "baseline_margin": str(a.baseline),
            "down": ", ".join(a.down),
            "live_spofs": "; ".join(" + ".join(c) for c in a.cuts),
        }
        alerts.append(
            {
                "status": n.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": _time(n.starts_at),
                "endsAt": _time(n.ends_at),
                "generatorURL": url,
                "fingerprint": a.fingerprint,
            }
        )
    return {
        "version": "4",
        "groupKey": group.key,
        "truncatedAlerts": 0,
        "status": group.status,
        "receiver": receiver,
        "groupLabels": group.labels,
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": url,
        "alerts": alerts,
    }


def plain_body(group: Group, monitor: str, topology: str) -> dict[str, Any]:
    """spofless's own JSON: every field of each alert, under its name."""
    return {
        "topology": topology,
        "monitor": monitor,
        "status": group.status,
        "group": group.labels,
        "alerts": [
            {
                "key": n.alert.key,
                "status": n.status,
                "alertname": n.alert.alertname,
                "component": n.alert.component,
                "severity": n.alert.severity,
                "summary": n.alert.summary,
                "margin": n.alert.margin,
                "baseline_margin": n.alert.baseline,
                "down": list(n.alert.down),
                "live_spofs": [list(c) for c in n.alert.cuts],
                "starts_at": n.starts_at,
                "ends_at": n.ends_at,
                "fingerprint": n.alert.fingerprint,
            }
            for n in group.notes
        ],
    }


def email_message(group: Group, sender: str, to: Sequence[str], topology: str) -> EmailMessage:
    firing = sum(1 for n in group.notes if n.status == "firing")
    what = f"FIRING:{firing}" if firing else "RESOLVED"
    labels = " ".join(group.labels.values())
    msg = EmailMessage()
    msg["Subject"] = f"[{what}] {topology}: {labels}"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    lines = []
    for n in group.notes:
        lines.append(f"[{n.status}] {n.alert.severity}: {n.alert.summary}")
        lines.append(
            f"  since {_time(n.starts_at)}" + (f", ended {_time(n.ends_at)}" if n.ends_at else "")
        )
    msg.set_content("\n".join(lines) + "\n")
    return msg


def read_secret(file: str | None, env: str | None, what: str) -> str | None:
    """The secret in `file` (its first line) or environment variable `env`; None if neither
    is named. SecretError when the one named cannot be read."""
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            reason = "it is empty" if isinstance(exc, IndexError) else str(exc)
            raise SecretError(f"cannot read the {what} from {file}: {reason}") from None
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretError(f"the {what} is to come from ${env}, which is not set")
        return value
    return None


class Sender:
    """Delivers groups to one receiver, with its timeout and retries."""

    def __init__(self, receiver: Receiver, index: int, topology: str, monitor: str) -> None:
        self.receiver = receiver
        self.name = receiver.name or f"{receiver.type}-{index}"
        self.topology = topology
        self.monitor = monitor
        self.url = ""  # the monitor's own address, for generatorURL
        self.secret: str | None = None
        if isinstance(receiver, WebhookReceiver):
            self.secret = read_secret(receiver.token_file, receiver.token_env, "webhook token")
        elif isinstance(receiver, EmailReceiver):
            self.secret = read_secret(
                receiver.password_file, receiver.password_env, "SMTP password"
            )

    async def send(self, group: Group) -> bool:
        """Deliver `group`; False when every attempt failed (each failure logged)."""
        r = self.receiver
        if group.status == "resolved" and not r.send_resolved:
            return True
        delay = r.backoff
        for attempt in range(r.retries + 1):
            try:
                async with asyncio.timeout(r.timeout):
                    await self._once(group)
                return True
            except (TimeoutError, OSError, httpx.HTTPError, smtplib.SMTPException, _Failed) as exc:
                logger.warning(
                    "%s: receiver %s attempt %d/%d failed: %s",
                    self.monitor,
                    self.name,
                    attempt + 1,
                    r.retries + 1,
                    exc or type(exc).__name__,
                )
            if attempt < r.retries:
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def _once(self, group: Group) -> None:
        r = self.receiver
        if isinstance(r, WebhookReceiver):
            body = (
                webhook_body(group, self.name, self.topology, self.url)
                if r.format == "alertmanager"
                else plain_body(group, self.monitor, self.topology)
            )
            headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
            async with httpx.AsyncClient(timeout=r.timeout, trust_env=False) as client:
                resp = await client.post(r.url, json=body, headers=headers)
            if not resp.is_success:
                raise _Failed(f"{r.url} answered {resp.status_code}")
        elif isinstance(r, CommandReceiver):
            await self._command(r, json.dumps(plain_body(group, self.monitor, self.topology)))
        else:
            msg = email_message(group, r.from_, r.to, self.topology)
            # smtplib blocks: a thread, each socket operation bounded by the timeout.
            await asyncio.to_thread(self._smtp, r, msg)

    async def _command(self, r: CommandReceiver, body: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(r.command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await proc.communicate(body.encode())
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip()[-200:]
            raise _Failed(f"{r.command} exited {proc.returncode}: {tail}")

    def _smtp(self, r: EmailReceiver, msg: EmailMessage) -> None:
        host, _, port = r.smtp.rpartition(":")
        with smtplib.SMTP(host, int(port), timeout=r.timeout) as smtp:
            if r.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if r.username is not None:
                smtp.login(r.username, self.secret or "")
            smtp.send_message(msg)


class _Failed(Exception):
    """A receiver answered, but not with success."""
