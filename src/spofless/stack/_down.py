"""`down`: stop the supervisor, then whatever it left behind, then the lab `up --lab` made."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable

import psutil

from spofless.stack._errors import StackError
from spofless.stack._lab import forget_lab, recorded_lab
from spofless.stack._plan import StackPlan
from spofless.stack._preflight import check_ports
from spofless.stack._process import group_alive, stop_groups
from spofless.stack._state import lock_path, read_state, read_state_quiet, supervisor_alive

Echo = Callable[[str], None]


def down(plan: StackPlan, echo: Echo, grace: float = 10.0) -> None:
    """Stop the supervisor (which stops its instances), then anything it left behind,
    then the lab `up --lab` made (its namespaces, links and anything still in them)."""
    state = read_state(plan.state_dir)
    lab = recorded_lab(plan.state_dir)
    if supervisor_alive(plan.state_dir):
        pid = _supervisor_pid(plan)
        echo(f"stopping the supervisor (pid {pid}) and its instances")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 20
        while supervisor_alive(plan.state_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        if supervisor_alive(plan.state_dir):
            echo(f"the supervisor (pid {pid}) did not stop; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # The lock goes just before the process: wait for the process too.
        _wait_gone(pid, deadline=time.monotonic() + 10)
        state = read_state(plan.state_dir)
    elif state is None and lab is None:
        echo(f"nothing to stop: no stack was started from {plan.state_dir}")
        return
    killed = kill_recorded_groups(plan, grace)
    if killed:
        echo(f"stopped {killed} process group(s) the supervisor had left behind")
    if lab is not None:
        removed = lab.down()
        forget_lab(plan.state_dir)
        echo(f"removed lab {lab.lab_id} ({len(removed)} network namespaces)")
    else:  # a lab's ports went with its namespaces
        _check_ports_released(plan, echo)
    echo(f"stopped {plan.topology.name}; logs stay in {plan.state_dir / 'logs'}")


def _wait_gone(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)


def _supervisor_pid(plan: StackPlan) -> int:
    try:
        return int(lock_path(plan.state_dir).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise StackError(
            f"cannot read the supervisor's pid from {lock_path(plan.state_dir)}"
        ) from None


def kill_recorded_groups(plan: StackPlan, grace: float) -> int:
    """Stop process groups recorded in the state file that still exist (supervisor gone).

    A recorded pgid cannot have been reused while any process of that group
    lives (Linux does not hand out a pid still in use as a process group id),
    so signalling an existing group signals what we started.
    """
    state = read_state_quiet(plan.state_dir) or {}
    pgids = [i["pgid"] for i in state.get("instances", []) if i.get("pgid")]
    live = [g for g in pgids if group_alive(g) and _group_is_ours(g)]
    if live:
        asyncio.run(stop_groups(live, grace))
    return len(live)


def _group_is_ours(pgid: int) -> bool:
    try:
        leader_pgid = os.getpgid(pgid)
    except ProcessLookupError:
        return True  # leader gone, group alive: the pgid cannot have been reused
    # A process with this pid leads another group: the pid was reused, not ours.
    return leader_pgid == pgid


def _check_ports_released(plan: StackPlan, echo: Echo) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            check_ports(plan.instances)
            return
        except StackError as exc:
            if time.monotonic() > deadline:
                echo(f"warning: {exc}")
                return
        time.sleep(0.1)
