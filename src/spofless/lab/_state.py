"""The lab state file: what a lab made and which faults are on, so any process can undo it.

Written (atomically) before the first namespace is made and after every change, so that
`teardown` works after a crash at any step and faults survive the command that set them.
Kept under /run by default: like the namespaces themselves, it does not outlive a reboot.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spofless.lab._errors import LabError
from spofless.lab._plan import Impairment, LabPlan, LinkPlan

DEFAULT_STATE_DIR = Path("/run/spofless/lab")


def state_path(state_dir: Path, lab_id: str) -> Path:
    return state_dir / f"{lab_id}.json"


def relay_log_path(state_dir: Path, lab_id: str) -> Path:
    return state_dir / f"{lab_id}.relay.log"


def relay_ready_path(state_dir: Path, lab_id: str) -> Path:
    return state_dir / f"{lab_id}.relay.ready"


@dataclass
class LabState:
    """The plan as made, plus what is different from it now (cuts, extra impairments)."""

    plan: LabPlan
    source: str
    status: str = "applying"  # applying | up
    relay_pid: int | None = None
    cut: list[str] = field(default_factory=list)  # elements cut off, in the order cut
    extra: dict[str, Impairment] = field(default_factory=dict)  # element -> added impairment

    def effective(self, link: LinkPlan) -> Impairment:
        """The impairment a link applies now: the file's, plus any fault on it."""
        extra = self.extra.get(link.element)
        return link.impairment if extra is None else link.impairment.plus(extra)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "plan": self.plan.to_json(),
            "source": self.source,
            "status": self.status,
            "relay_pid": self.relay_pid,
            "cut": self.cut,
            "extra": {k: asdict(v) for k, v in self.extra.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            plan=LabPlan.from_json(data["plan"]),
            source=data["source"],
            status=data["status"],
            relay_pid=data["relay_pid"],
            cut=list(data["cut"]),
            extra={k: Impairment(**v) for k, v in data["extra"].items()},
        )


def save_state(state_dir: Path, state: LabState) -> Path:
    path = state_path(state_dir, state.plan.lab_id)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(state.to_json(), indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        raise LabError(f"cannot write the lab state file {path}: {exc}") from None
    return path


def load_state(state_dir: Path, lab_id: str) -> LabState | None:
    """The lab's state, or None when there is no state file."""
    path = state_path(state_dir, lab_id)
    try:
        data = json.loads(path.read_text())
        return LabState.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"unreadable lab state file {path}: {exc}") from None


def remove_state(state_dir: Path, lab_id: str) -> None:
    for path in (
        state_path(state_dir, lab_id),
        relay_ready_path(state_dir, lab_id),
        relay_log_path(state_dir, lab_id),
    ):
        path.unlink(missing_ok=True)
