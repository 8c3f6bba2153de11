"""The state directory: where `up`, `status`, `logs` and `down` find each other.

    <state dir>/state.json       what the supervisor knows, rewritten atomically on change
    <state dir>/supervisor.lock  flock held by the live supervisor (liveness, one per dir)
    <state dir>/supervisor.log   the supervisor's own log
    <state dir>/logs/<component>-<index>.log
    <state dir>/data/<component>-<index>/  (etcd members' data)

Why a state file rather than a socket API on the supervisor: it outlives the
supervisor, so `down` still finds and stops every process group after the
supervisor was killed with -9, and `status` can say so; readers never see a
half-written file (write to a temporary file, fsync, rename); and there is no
protocol beyond one JSON document. Liveness comes from the lock, not from a
pid that may have been reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spofless.stack._errors import StackError

if TYPE_CHECKING:
    from spofless.stack._plan import InstancePlan

STATE_VERSION = 1


def default_state_dir(topology_file: Path) -> Path:
    """`.spofless/<file stem>` next to the topology file (stable while the file keeps its name)."""
    topology_file = topology_file.resolve()
    return topology_file.parent / ".spofless" / topology_file.stem


def state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def lock_path(state_dir: Path) -> Path:
    return state_dir / "supervisor.lock"


def supervisor_log_path(state_dir: Path) -> Path:
    return state_dir / "supervisor.log"


def ensure_writable(state_dir: Path) -> None:
    """Create the state dir (and logs/) or raise StackError saying why it cannot be used."""
    try:
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StackError(
            f"state dir {state_dir} is not usable: {reason}; choose a writable one with --state-dir"
        ) from None


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically: readers see the old or the new document, never a mix."""
    path = state_path(state_dir)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": STATE_VERSION, **state}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The last state written, or None when there is none."""
    try:
        text = state_path(state_dir).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StackError(f"cannot read {state_path(state_dir)}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackError(f"{state_path(state_dir)} is not valid JSON ({exc}); remove it") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StackError(f"{state_path(state_dir)} was written by another spofless version")
    return data


class FileLock:
    """An exclusive flock on a file, holding this process's pid; gone with the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, details: str = "") -> bool:
        """Take the lock without waiting; False when another process holds it. The file
        then holds this process's pid on its first line, `details` after it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{details}".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_held(path: Path) -> bool:
    """True while some process holds the FileLock on `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class SupervisorLock(FileLock):
    """The exclusive lock a live supervisor holds on its state dir."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(lock_path(state_dir))


def supervisor_alive(state_dir: Path) -> bool:
    """True while a supervisor holds the state dir's lock."""
    return lock_held(lock_path(state_dir))


def read_state_quiet(state_dir: Path) -> dict[str, Any] | None:
    """The last state written; None when there is none or it cannot be read."""
    try:
        return read_state(state_dir)
    except StackError:
        return None


def instance_doc(inst: InstancePlan, **running: Any) -> dict[str, Any]:
    """An instance's entry in the state file: what the plan says, then `running` (state,
    pid, health, ...) over the defaults of an instance that is not running."""
    doc: dict[str, Any] = {
        "name": inst.name,
        "component": inst.component,
        "index": inst.index,
        "host": inst.host,
        "kind": inst.kind,
        "state": "stopped",
        "pid": None,
        "pgid": None,
        "ports": dict(inst.ports),
        "address": inst.address,
        "health": "unknown",
        "role": None,
        "started_at": None,
        "restarts": 0,
        "last_exit": None,
        "message": None,
        "log": str(inst.log_path),
    }
    doc.update(running)
    return doc
