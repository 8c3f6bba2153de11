"""One rollout at a time per stack, and a record of where it is.

    <state_dir>/rollout.lock   held (flock) by the running rollout
    <state_dir>/rollout.json   its progress: component, step, phase, what it drained

The lock makes a second rollout of the same stack refuse to start. The record
says what `spofless rollout FILE --status` shows, and what a rollout that died
left drained: the next rollout (or `--abort`) puts those instances back in
rotation, so that no instance stays drained because a rollout was killed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spofless.rollout._lbs import RolloutError
from spofless.stack._state import FileLock, lock_held

__all__ = ["Progress", "RolloutLock", "read_progress", "write_progress"]


def lock_path(state_dir: Path) -> Path:
    return state_dir / "rollout.lock"


def progress_path(state_dir: Path) -> Path:
    return state_dir / "rollout.json"


@dataclass(slots=True)
class Progress:
    pid: int
    component: str
    started_at: float
    steps: int
    step: int = 0  # 1-based once started
    instance: str | None = None
    phase: str = "planned"  # draining | replacing | readmitting | done | failed | aborted
    drained: list[str] = field(default_factory=list)  # instances this rollout drained
    updated_at: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "failed", "aborted")

    def describe(self, alive: bool) -> str:
        where = f"step {self.step} of {self.steps}" + (
            f", {self.instance}" if self.instance else ""
        )
        state = self.phase if alive or self.finished else f"{self.phase} (its process is gone)"
        drained = f"; drained: {', '.join(self.drained)}" if self.drained else ""
        return f"rollout of {self.component} (pid {self.pid}): {where}: {state}{drained}"


def write_progress(state_dir: Path, p: Progress) -> None:
    p.updated_at = time.time()
    tmp = progress_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(p), indent=1))
    os.replace(tmp, progress_path(state_dir))


def read_progress(state_dir: Path) -> Progress | None:
    try:
        data: dict[str, Any] = json.loads(progress_path(state_dir).read_text())
        return Progress(**data)
    except (OSError, ValueError, TypeError):
        return None


class RolloutLock:
    """The exclusive lock of the running rollout of one stack."""

    def __init__(self, state_dir: Path) -> None:
        self._lock = FileLock(lock_path(state_dir))
        self.state_dir = state_dir

    def acquire(self) -> None:
        """Take it or raise RolloutError naming the rollout that holds it."""
        if not self._lock.acquire():
            running = read_progress(self.state_dir)
            what = running.describe(True) if running else "another rollout"
            raise RolloutError(
                f"a rollout already runs here: {what}; wait for it, or stop it with --abort"
            )

    def release(self) -> None:
        self._lock.release()


def held(state_dir: Path) -> bool:
    """True while a rollout holds the lock of this stack."""
    return lock_held(lock_path(state_dir))
