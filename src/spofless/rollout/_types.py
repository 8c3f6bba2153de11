"""What a rollout is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spofless.rollout._coordination import Coordination
from spofless.rollout.plan import RolloutPlan
from spofless.stack._lb_admin import LbAdmin
from spofless.topology import Topology

__all__ = ["Prepared", "RolloutOptions", "RolloutResult", "StepResult"]


@dataclass(frozen=True, slots=True)
class RolloutOptions:
    run: str | None = None  # kind service: the new `run:` command ({port} ... expanded)
    allow_spof: bool = False
    surge: int = 0  # kind service: temporary instances started first, removed last
    drain_timeout: float = 30.0
    health_timeout: float = 60.0
    watch: float = 2.0  # seconds of counters watched after readmission
    pause_between: float = 0.0
    on_failure: Literal["rollback", "pause"] = "rollback"


@dataclass(slots=True)
class StepResult:
    instance: str
    action: str  # replace | switchover | handover | surge | unsurge
    outcome: (
        str  # replaced | rolled back | stopped | switched over | handed over | started | removed
    )
    seconds: float
    drain_seconds: float | None = None
    cut: int = 0  # requests open at the drain timeout
    failed_responses: int = 0  # seen in the watch window
    pid: int | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "action": self.action,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "drain_seconds": None if self.drain_seconds is None else round(self.drain_seconds, 3),
            "cut": self.cut,
            "failed_responses": self.failed_responses,
            "pid": self.pid,
            "detail": self.detail,
        }


@dataclass(slots=True)
class RolloutResult:
    component: str
    plan: RolloutPlan
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "ok": self.ok,
            "error": self.error,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a rollout works on, checked before anything moves."""

    topology: Topology
    state_dir: Path  # where `up` ran (the state dir a --run command may name)
    coord: Coordination
    component: str
    plan: RolloutPlan
    admins: tuple[LbAdmin, ...]
