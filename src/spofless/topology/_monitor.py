"""The fields of a `kind: monitor` component (spofless.monitor).

    monitor:
      kind: monitor
      instances: 2                      # two or more: one monitor is a SPOF of alerting
      port: 9600                        # instance i serves /status and /metrics on port + i
      dcs: etcd                         # where alerts are claimed; default: the only etcd
      receivers:
        - {type: webhook, url: http://127.0.0.1:9093/hook, format: alertmanager}
        - {type: email, smtp: 127.0.0.1:2525, from: monitor@shop, to: [ops@shop],
           username: monitor, password_file: /etc/spofless/smtp.pass}
        - {type: command, command: /usr/local/bin/page-someone}

Secrets (a webhook's bearer token, the SMTP password) are never written here:
only the file or the environment variable that holds them (`*_file`, `*_env`).
Times are seconds or `<n>s|m|h|d|w`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, field_validator, model_validator

from spofless.topology._schema import Duration, Name, RuntimeComponent, Strict, parse_duration

# Field names that would put a secret in the topology file, and what to write instead.
_SECRET_FIELDS = {
    "token": "token_file or token_env",
    "password": "password_file or password_env",
    "bearer_token": "token_file or token_env",
}


def _no_secret(data: Any) -> Any:
    if isinstance(data, dict):
        for name, instead in _SECRET_FIELDS.items():
            if name in data:
                raise ValueError(
                    f"`{name}` would put a secret in the topology file: write {instead} "
                    "(the file or the environment variable that holds it)"
                )
    return data


class _Delivery(Strict):
    """How hard one receiver tries: every attempt is bounded, and so are the attempts."""

    name: Name | None = None  # in logs and events; default: the type and its position
    # One attempt gives up after `timeout`; `retries` more follow, `backoff` apart
    # (doubling). The whole must fit in the monitor's claim_ttl (checked there).
    timeout: Annotated[float, Field(gt=0, le=300)] = 3.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff: Annotated[float, Field(ge=0, le=60)] = 0.2
    send_resolved: bool = True

    def worst_case(self) -> float:
        """Seconds one delivery can take at most, every attempt timing out."""
        backoffs = sum(self.backoff * float(2**i) for i in range(self.retries))
        return float(self.timeout * (self.retries + 1) + backoffs)


class WebhookReceiver(_Delivery):
    """POST the notification as JSON: Alertmanager's webhook body, or spofless's own."""

    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    format: Literal["alertmanager", "json"] = "alertmanager"
    token_file: str | None = None  # Authorization: Bearer <the file's first line>
    token_env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _no_secret(data)


Address = Annotated[str, StringConstraints(pattern=r"^\S+@\S+$")]


class EmailReceiver(_Delivery):
    """One mail per notification over SMTP (STARTTLS when `starttls`)."""

    type: Literal["email"]
    smtp: Annotated[str, StringConstraints(pattern=r"^[^\s:]+:\d{1,5}$")]  # host:port
    from_: Annotated[str, Field(alias="from"), StringConstraints(pattern=r"^\S+@\S+$")]
    to: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^\S+@\S+$")]], Field(min_length=1)
    ]
    starttls: bool = False
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _no_secret(data)


class CommandReceiver(_Delivery):
    """Run a program (no shell) with the notification's JSON on its standard input; exit
    status 0 is a delivery."""

    type: Literal["command"]
    command: str

    @field_validator("command")
    @classmethod
    def _splits(cls, v: str) -> str:
        import shlex

        try:
            argv = shlex.split(v)
        except ValueError as exc:
            raise ValueError(f"cannot split the command: {exc}") from None
        if not argv:
            raise ValueError("the command is empty")
        return v


Receiver = Annotated[WebhookReceiver | EmailReceiver | CommandReceiver, Field(discriminator="type")]


GroupLabel = Literal["alertname", "component", "severity"]
DEFAULT_GROUP_BY: tuple[GroupLabel, ...] = ("alertname", "component")


class MonitorComponent(RuntimeComponent):
    """Watches every instance of the topology, re-runs the analysis on what it sees and
    alerts when redundancy shrinks; its instances claim each notification in etcd so the
    group sends it once (spofless.monitor)."""

    kind: Literal["monitor"] = "monitor"
    dcs: Name | None = None  # the etcd component of the claims; None: the topology's only one
    # Every instance is polled this often, each probe bounded by probe_timeout. With the
    # defaults a killed instance (connection refused) is seen within one interval, a
    # silent one within fall x (interval + probe_timeout).
    interval: Annotated[float, Field(gt=0, le=3600)] = 0.2
    probe_timeout: Annotated[float, Field(gt=0, le=60)] = 0.5
    fall: Annotated[int, Field(ge=1, le=100)] = 2
    rise: Annotated[int, Field(ge=1, le=100)] = 2
    # An instance that changes state flap_count times within flap_window is reported once
    # as flapping (with the count) rather than at every change.
    flap_window: Duration = 60.0
    flap_count: Annotated[int, Field(ge=2, le=1000)] = 4
    # A replica further behind than this (bytes) is an event, not a failure.
    max_lag: Annotated[int, Field(ge=0)] = 16 * 1024 * 1024
    # Largest size of the cut sets searched on the live state: margins above it read
    # as "at least max_order + 1".
    max_order: Annotated[int, Field(ge=1, le=4)] = 3
    # Alertmanager's meaning: alerts with the same values of these labels go in one
    # notification; a new group waits group_wait for more; a firing group is sent again
    # after repeat_interval.
    group_by: list[GroupLabel] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    group_wait: Annotated[float, Field(ge=0, le=3600)] = 0.0
    repeat_interval: Duration = 4 * 3600.0
    # A monitor that claimed a notification and died is replaced by another after this
    # long; longer than any one delivery can take, so that a live sender is never doubled.
    claim_ttl: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Events kept in each instance's SQLite history (the oldest go first).
    max_events: Annotated[int, Field(ge=100, le=10_000_000)] = 100_000
    # Gauges per instance (request rate, latency, CPU, memory, replication lag) are sampled
    # this often into the history: raw samples for keep_raw, then 1-minute aggregates for
    # keep_minutes, 1-hour ones for keep_hours and 1-day ones for keep_days (each with its
    # highest 1-minute average), so the database stays bounded and `spofless trends` has
    # the daily peaks of years.
    gauge_interval: Annotated[float, BeforeValidator(parse_duration), Field(ge=1, le=3600)] = 10.0
    keep_raw: Duration = 3600.0
    keep_minutes: Duration = 86400.0
    keep_hours: Duration = 35 * 86400.0
    keep_days: Duration = 730 * 86400.0
    # An instance its supervisor restarted crash_restarts times within crash_window is in
    # a crash loop (an event); it is over once a whole window passes without a restart.
    crash_restarts: Annotated[int, Field(ge=2, le=1000)] = 3
    crash_window: Duration = 600.0
    receivers: list[Receiver] = Field(default_factory=list)
    # Its HTTP API and dashboard are read-only; beyond loopback every request must carry
    # this bearer token (`Authorization: Bearer`, or `?token=` for a browser).
    token_file: str | None = None
    token_env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _no_secret(data)

    @model_validator(mode="after")
    def _timing(self) -> MonitorComponent:
        # Each step is rolled up from the one below before that one's rows are removed.
        if self.keep_raw < 2 * 60 + self.gauge_interval:
            raise ValueError(
                f"keep_raw ({self.keep_raw:g}s) must be at least 2 minutes + gauge_interval "
                f"({2 * 60 + self.gauge_interval:g}s): raw samples are rolled into 1-minute "
                "aggregates before they go; raise keep_raw"
            )
        if self.keep_minutes < 2 * 3600:
            raise ValueError(
                f"keep_minutes ({self.keep_minutes:g}s) must be at least 2h: 1-minute "
                "aggregates are rolled into 1-hour ones before they go; raise keep_minutes"
            )
        if self.keep_hours < 2 * 86400:
            raise ValueError(
                f"keep_hours ({self.keep_hours:g}s) must be at least 2d: 1-hour aggregates are "
                "rolled into 1-day ones before they go; raise keep_hours"
            )
        if self.keep_days < 28 * 86400:
            raise ValueError(
                f"keep_days ({self.keep_days:g}s) must be at least 28d: `spofless trends` fits "
                "the daily peaks of 4 weeks; raise keep_days"
            )
        if self.crash_window <= 0:
            raise ValueError("crash_window must be more than 0s")
        for i, receiver in enumerate(self.receivers):
            worst = receiver.worst_case()
            if worst >= self.claim_ttl:
                raise ValueError(
                    f"receivers[{i}] can take {worst:g}s to deliver (timeout x attempts + "
                    f"backoff), not under claim_ttl ({self.claim_ttl:g}s): another monitor "
                    "would take its claim over and send it twice; raise claim_ttl or lower "
                    "timeout or retries"
                )
        return self
