"""What the supervisor decides, as pure functions over plain data.

An instance's life (the states `status` shows):

    starting ──healthy──▶ up ──unhealthy──▶ down ──healthy──▶ up
       │                   │                  │
       └──────────── process exits ───────────┘
                           │
               decide_exit ├─▶ restarting ──(backoff delay)──▶ starting
                           └─▶ failed      (crash loop: N fast exits in a row; no more restarts)

    any state ──down/stop──▶ stopped

A run shorter than `fast_exit` counts as a fast exit. Fast exits in a row
double the restart delay up to `backoff_max`; `crash_loop_exits` of them in a
row mark the instance `failed`, which stays shown until `down` (systemd's
StartLimitBurst, without the silent give-up). A run that lasted longer resets
the count: one crash after a long healthy run restarts after the initial delay.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

State = Literal["starting", "up", "down", "restarting", "failed", "stopped"]
Health = Literal["unknown", "healthy", "unhealthy", "none"]

STATES: tuple[State, ...] = ("starting", "up", "down", "restarting", "failed", "stopped")


class RestartPolicy(BaseModel):
    """When and how fast the supervisor restarts an instance that exited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fast enough that a killed instance is back within a second, slow enough
    # that a crash loop costs little CPU once the delay has grown.
    backoff_initial: Annotated[float, Field(gt=0, le=60)] = 0.5
    backoff_factor: Annotated[float, Field(ge=1, le=10)] = 2.0
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # A process that dies within this many seconds of its start did not really start.
    fast_exit: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # This many fast exits in a row is a crash loop: stop restarting, show `failed`.
    crash_loop_exits: Annotated[int, Field(ge=1, le=1000)] = 5

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> RestartPolicy:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max}s) must be at least backoff_initial "
                f"({self.backoff_initial}s)"
            )
        return self


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What the supervisor knows about one instance. Replaced, never mutated."""

    state: State = "starting"
    pid: int | None = None
    started_at: float | None = None  # wall clock of the current (or last) process start
    restarts: int = 0  # restarts after an exit since `up`
    fast_exits: int = 0  # fast exits in a row
    health: Health = "unknown"
    restart_at: float | None = None  # when `restarting`: the time of the next start
    last_exit: str | None = None  # "exit status 1", "killed by SIGKILL"
    message: str | None = None  # why the state is what it is, for `status`


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """What to do after an instance's process exited."""

    restart: bool
    delay: float  # seconds before the restart; 0 when not restarting
    reason: str  # one human sentence, logged as is


def describe_exit(returncode: int) -> str:
    """`exit status 3`, `killed by SIGKILL` (asyncio/subprocess returncode convention)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def backoff_delay(fast_exits: int, policy: RestartPolicy) -> float:
    """Delay before the next start after `fast_exits` fast exits in a row (0 or more)."""
    steps = max(fast_exits - 1, 0)
    return float(min(policy.backoff_max, policy.backoff_initial * policy.backoff_factor**steps))


def decide_exit(
    current: InstanceState, returncode: int, now: float, policy: RestartPolicy
) -> tuple[InstanceState, ExitDecision]:
    """The instance's process exited with `returncode` at `now`: restart it or give up."""
    ran_for = now - current.started_at if current.started_at is not None else 0.0
    fast = ran_for < policy.fast_exit
    fast_exits = current.fast_exits + 1 if fast else 0
    how = describe_exit(returncode)
    if fast_exits >= policy.crash_loop_exits:
        reason = (
            f"crash loop: {fast_exits} exits in a row within {policy.fast_exit:g}s of starting "
            f"(last: {how}); not restarting"
        )
        new = dataclasses.replace(
            current,
            state="failed",
            pid=None,
            fast_exits=fast_exits,
            health="unknown",
            restart_at=None,
            last_exit=how,
            message=reason,
        )
        return new, ExitDecision(False, 0.0, reason)
    delay = backoff_delay(fast_exits, policy)
    reason = f"{how} after {ran_for:.1f}s; restarting in {delay:g}s"
    new = dataclasses.replace(
        current,
        state="restarting",
        pid=None,
        fast_exits=fast_exits,
        health="unknown",
        restart_at=now + delay,
        last_exit=how,
        message=reason,
    )
    return new, ExitDecision(True, delay, reason)


def on_spawned(current: InstanceState, pid: int, now: float, restart: bool) -> InstanceState:
    """A process was started for the instance (`restart`: after an exit, not the first)."""
    return dataclasses.replace(
        current,
        state="starting",
        pid=pid,
        started_at=now,
        restarts=current.restarts + (1 if restart else 0),
        health="unknown",
        restart_at=None,
        message=None,
    )


def on_health(current: InstanceState, healthy: bool) -> InstanceState:
    """The health detector's verdict changed (or was first given) for a running instance."""
    if current.state not in ("starting", "up", "down"):
        return current  # a verdict about a process that is gone no longer matters
    if healthy:
        return dataclasses.replace(current, state="up", health="healthy", message=None)
    if current.state == "starting":
        # Not healthy yet while starting is expected; say so without calling it down.
        return dataclasses.replace(current, health="unhealthy")
    return dataclasses.replace(
        current, state="down", health="unhealthy", message="failing its health check"
    )


def on_running_without_check(current: InstanceState) -> InstanceState:
    """An instance with neither a health check nor a port is up once its process runs."""
    if current.state != "starting":
        return current
    return dataclasses.replace(current, state="up", health="none")


def on_stopped(current: InstanceState, how: str | None) -> InstanceState:
    """The instance was stopped on purpose (`down`, or the whole stack failing to start)."""
    return dataclasses.replace(
        current,
        state="stopped",
        pid=None,
        health="unknown",
        restart_at=None,
        last_exit=how if how is not None else current.last_exit,
        message=None,
    )


def on_spawn_failed(current: InstanceState, error: str) -> InstanceState:
    """The process could not even be started (missing command, permission): no retry."""
    return dataclasses.replace(current, state="failed", pid=None, message=error)


def uptime(current: InstanceState, now: float) -> float | None:
    """Seconds the current process has run, None when none runs."""
    if current.pid is None or current.started_at is None:
        return None
    return max(now - current.started_at, 0.0)
