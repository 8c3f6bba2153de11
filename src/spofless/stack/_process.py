"""Starting and stopping instance processes: own process group, parent-death signal.

Each instance runs in its own session and process group (pgid = its pid), so
a signal reaches the program and everything it spawned, and a Ctrl-C at the
supervisor's terminal does not. The child asks the kernel for SIGKILL when the
supervisor dies (prctl PR_SET_PDEATHSIG), so killing the supervisor with -9
leaves no orphan; grandchildren that escape the group are caught by `down`,
which kills the recorded process groups.

PR_SET_PDEATHSIG fires when the *thread* that forked exits: the supervisor
forks from its event loop thread, which lives as long as the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import psutil

from spofless._linux import die_with_parent


def instance_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment an instance runs with: spofless's own, then the component's `env`.

    When spofless runs from a virtualenv, that environment's bin directory comes
    first on PATH (as if activated), so `python -m ...` and `spofless` in a `run`
    command are the ones spofless itself runs with.
    """
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", os.defpath)])
    env.update(extra)
    return env


def _die_with(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        if not die_with_parent(signal.SIGKILL, parent_pid):
            os._exit(70)  # the parent died before the request took effect

    return setup


async def spawn(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
) -> asyncio.subprocess.Process:
    """Start `argv` in its own process group, output appended to `log_path`.

    Raises OSError (FileNotFoundError, PermissionError) when it cannot be started.
    """
    with _open_log(log_path, argv) as log:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=instance_env(env),
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )


def _open_log(log_path: Path, argv: Sequence[str]) -> BinaryIO:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 (closed by the caller's with)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log.write(f"--- spofless {stamp}: starting {' '.join(argv)}\n".encode())
    return log


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of the group runs. Zombies do not count: a killed
    instance whose parent died waits for a reaper (which a container's pid 1 may
    never be) but holds no port and runs nothing."""
    if not signal_group(pgid, 0):
        return False
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (psutil.Error, ProcessLookupError):
            continue
    return False


async def stop_groups(pgids: Sequence[int], grace: float) -> list[int]:
    """SIGTERM every group, wait up to `grace` seconds, SIGKILL what is left.

    Returns the groups that had to be killed. Zombies of the caller's own children
    count as alive until reaped, so the caller reaps them concurrently (asyncio does).
    """
    live = [g for g in pgids if signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        live = [g for g in live if group_alive(g)]
    for g in live:
        signal_group(g, signal.SIGKILL)
    # Bounded: SIGKILL cannot be caught, the kernel needs only to reap.
    deadline = time.monotonic() + 5.0
    rest = list(live)
    while rest and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        rest = [g for g in rest if group_alive(g)]
    return live
