"""`up`: start a topology's instances on this machine (`down` is in `_down.py`,
`status` and `logs` in `_status.py`).

`up` checks everything it can before starting anything (analysis, state dir,
commands, ports), then runs the supervisor in the foreground with a live
table, or detached: a background process (`python -m spofless.stack._daemon`)
that `up` watches through the state file until every instance has started
(`--wait`: is healthy), stopping it again when that fails. With `lab`, it
first makes the topology's lab and runs everything in it (see `_lab.py`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spofless.lab import Lab, LabError
from spofless.security import init_secrets, secrets_dir
from spofless.stack._down import kill_recorded_groups
from spofless.stack._errors import StackError, StartError
from spofless.stack._lab import (
    enter_netns,
    forget_lab,
    lab_topology_path,
    record_lab,
    recorded_lab,
    start_lab,
    write_lab_topology,
)
from spofless.stack._plan import StackPlan, plan_stack
from spofless.stack._preflight import (
    check_commands,
    check_spof,
    ephemeral_port_warning,
    preflight,
)
from spofless.stack._state import (
    default_state_dir,
    ensure_writable,
    read_state_quiet,
    state_path,
    supervisor_alive,
    supervisor_log_path,
)
from spofless.stack._supervisor import Supervisor, SupervisorSettings
from spofless.topology import Topology

logger = logging.getLogger(__name__)

Echo = Callable[[str], None]


def make_plan(
    topology: Topology,
    state_dir: Path | None,
    hosts: Sequence[str] = (),
    lab: Lab | None = None,
    check_clashes: bool = True,
) -> StackPlan:
    """The plan every command works from; the state dir defaults to one next to the file.

    With `lab` (up), the plan runs in it: hosts at their lab addresses, each command
    inside its host's namespace. LabError when the lab is not up.
    """
    state_dir = _state_dir(topology, state_dir)
    if lab is None:
        return plan_stack(topology, state_dir, hosts, check_clashes=check_clashes)

    def wrap(host: str | None) -> list[str]:
        assert host is not None  # the lab places hostless instances on its default host
        return lab.argv(host, ())

    return plan_stack(
        lab.topology(topology),
        state_dir,
        hosts,
        topology_file=lab_topology_path(state_dir),
        wrap=wrap,
        lab=lab.lab_id,
    )


def running_plan(topology: Topology, state_dir: Path | None) -> StackPlan:
    """The plan of what `up` started from `state_dir` (in its lab, if it made one)."""
    state_dir = _state_dir(topology, state_dir)
    lab = recorded_lab(state_dir)
    if lab is not None:
        with contextlib.suppress(LabError):
            return make_plan(topology, state_dir, (), lab)
    # Reading what runs (status, logs, down) is no place to refuse a clash.
    return make_plan(topology, state_dir, check_clashes=False)


def _state_dir(topology: Topology, state_dir: Path | None) -> Path:
    if state_dir is None:
        if topology.file is None:
            raise StackError("--state-dir is needed for a topology that is not a file")
        state_dir = default_state_dir(topology.file)
    return state_dir.resolve()


# -- up --------------------------------------------------------------------------


def up(
    topology: Topology,
    state_dir: Path | None,
    hosts: Sequence[str],
    echo: Echo,
    *,
    detach: bool,
    wait: bool,
    allow_spof: bool,
    settings: SupervisorSettings,
    lab: bool = False,
) -> None:
    """Start what `topology` places on `hosts` (see module docstring); StackError leaves nothing.

    With `lab`, in the topology's lab, made first (on loopback, said, without root);
    a detached stack leaves the lab up for `down` to remove, a foreground one removes it.
    """
    # What is missing (a new topology's CA, certificates, passwords); nothing existing
    # changes. First: planning PostgreSQL instances reads them.
    made_secrets = init_secrets(topology)
    if made_secrets:
        echo(f"made {len(made_secrets)} secrets in {secrets_dir(topology)} (spofless secrets init)")
    # Hosts sharing an address here may each have their own in the lab.
    plan = make_plan(topology, state_dir, hosts, check_clashes=not lab)
    if not lab:
        _up(plan, echo, detach, wait, allow_spof, settings, None)
        return
    _refuse_running(plan)
    check_spof(topology, allow_spof)  # before making a lab that would be refused
    check_commands(plan)
    made = start_lab(topology, echo)
    if made is None:
        plan = make_plan(topology, state_dir, hosts)  # on this machine's addresses after all
        _up(plan, echo, detach, wait, allow_spof, settings, None)
        return
    try:
        ensure_writable(plan.state_dir)
        record_lab(plan.state_dir, made)
        in_lab = make_plan(topology, plan.state_dir, hosts, made)
        # Host certificates for the lab's addresses (etcd members serve with them as
        # they start; PostgreSQL agents would make theirs themselves).
        init_secrets(in_lab.topology)
        write_lab_topology(plan.state_dir, in_lab.topology)
        _up(in_lab, echo, detach, wait, allow_spof, settings, made)
    except BaseException:
        _remove_lab(made, plan.state_dir)
        raise
    if not (detach or wait):
        _remove_lab(made, plan.state_dir)


def _refuse_running(plan: StackPlan) -> None:
    if supervisor_alive(plan.state_dir):
        raise StackError(
            f"already running from {plan.state_dir}; `spofless down` it first "
            "or use another --state-dir"
        )


def _remove_lab(lab: Lab, state_dir: Path) -> None:
    lab.down()
    forget_lab(state_dir)


def _up(
    plan: StackPlan,
    echo: Echo,
    detach: bool,
    wait: bool,
    allow_spof: bool,
    settings: SupervisorSettings,
    lab: Lab | None,
) -> None:
    _refuse_running(plan)
    for skipped in plan.skipped:
        echo(str(skipped))
    warning = preflight(plan, allow_spof)
    if warning is not None:
        echo("warning: running a topology with a single point of failure (--allow-spof):")
        echo(warning.rstrip())
    ports = ephemeral_port_warning(plan.instances)
    if ports is not None:
        echo(f"warning: {ports}")
    ensure_writable(plan.state_dir)
    with contextlib.suppress(FileNotFoundError):
        state_path(plan.state_dir).unlink()
    if detach or wait:
        _up_detached(plan, echo, wait, settings, lab)
    else:
        _up_foreground(plan, settings, lab)


def _daemon_argv(plan: StackPlan, settings: SupervisorSettings, lab: Lab | None) -> list[str]:
    argv = [sys.executable, "-m", "spofless.stack._daemon", "--state-dir", str(plan.state_dir)]
    argv += ["--timeout", str(settings.start_timeout), "--stop-grace", str(settings.stop_grace)]
    for h in plan.hosts:
        argv += ["--host", h]
    # The daemon runs in the file's folder: give it the file by absolute path.
    source = plan.topology.file
    argv.append(str(source.resolve()) if source else plan.topology.source)
    if lab is None:
        return argv
    # In the control namespace, its health checks reach every host of the lab.
    return lab.control_argv([*argv, "--lab"])


def _up_detached(
    plan: StackPlan, echo: Echo, wait: bool, settings: SupervisorSettings, lab: Lab | None
) -> None:
    with open(supervisor_log_path(plan.state_dir), "ab") as log:
        daemon = subprocess.Popen(
            _daemon_argv(plan, settings, lab),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=plan.topology.file.parent if plan.topology.file else None,
        )
    try:
        _wait_started(plan, daemon, settings.start_timeout + 10)
        if wait:
            _wait_healthy(plan, daemon, settings.start_timeout)
    except StackError:
        _stop_daemon(plan, daemon, settings.stop_grace)
        raise
    n = len(plan.instances)
    healthy = " and healthy" if wait else ""
    echo(f"{n} instance(s) started{healthy}; supervisor pid {daemon.pid}")
    echo(f"`spofless status {plan.topology.source}` shows them, `spofless down` stops them")


def _wait_started(plan: StackPlan, daemon: subprocess.Popen[bytes], bound: float) -> None:
    deadline = time.monotonic() + bound
    while True:
        state = read_state_quiet(plan.state_dir)
        phase = state.get("phase") if state else None
        if phase == "running":
            return
        if phase == "failed" or daemon.poll() is not None:
            daemon.wait(timeout=30)
            error = (state or {}).get("error") or _tail(supervisor_log_path(plan.state_dir), 15)
            raise StartError(f"the stack did not start; everything was stopped:\n{error}")
        if time.monotonic() > deadline:
            raise StartError(f"the supervisor did not finish starting within {bound:g}s")
        time.sleep(0.1)


def _wait_healthy(plan: StackPlan, daemon: subprocess.Popen[bytes], bound: float) -> None:
    deadline = time.monotonic() + bound
    while True:
        state = read_state_quiet(plan.state_dir) or {}
        instances = state.get("instances", [])
        failed = [i for i in instances if i["state"] == "failed"]
        if failed:
            raise StartError(
                "instances failed; everything was stopped:\n"
                + "\n".join(_failure(i) for i in failed)
            )
        if instances and all(i["state"] == "up" for i in instances):
            return
        if daemon.poll() is not None:
            raise StartError(
                "the supervisor exited; see " + str(supervisor_log_path(plan.state_dir))
            )
        if time.monotonic() > deadline:
            late = [f"{i['name']} ({i['state']})" for i in instances if i["state"] != "up"]
            raise StartError(
                f"not all instances were healthy after {bound:g}s: {', '.join(late)}; "
                "everything was stopped"
            )
        time.sleep(0.1)


def _failure(inst: dict[str, Any]) -> str:
    tail = _tail(Path(inst["log"]), 8)
    why = inst["message"] or inst["last_exit"]
    return f"{inst['name']}: {why}\n  last lines of {inst['log']}:\n{tail}"


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 16384, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"    ({path} cannot be read)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _stop_daemon(plan: StackPlan, daemon: subprocess.Popen[bytes], grace: float) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=grace + 15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
    kill_recorded_groups(plan, grace)


def _up_foreground(plan: StackPlan, settings: SupervisorSettings, lab: Lab | None) -> None:
    if lab is not None:
        # Before any thread or process starts: all of them then live in the control
        # namespace, from where the health checks reach every host of the lab.
        control = lab.plan.control
        if control is None:
            raise StackError(f"lab {lab.lab_id} has no control namespace; recreate it")
        enter_netns(control.netns)
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from spofless.stack._status import live_document, render_status

    console = Console()
    events: collections.deque[str] = collections.deque(maxlen=8)
    handler = _DequeHandler(events)
    file_handler = logging.FileHandler(supervisor_log_path(plan.state_dir))
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("spofless")
    root.addHandler(handler)
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)

    # No refresh thread (auto_refresh=False): the supervisor forks from this thread only.
    with Live(console=console, auto_refresh=False, transient=False) as live:

        def show(sup: Supervisor) -> None:
            doc = live_document(plan, sup.document())
            recent = Text("\n".join(events), style="dim")
            live.update(Group(render_status(doc), recent), refresh=True)

        supervisor = Supervisor(plan, settings, on_change=show)

        async def main() -> int:
            async def tick() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    show(supervisor)

            ticker = asyncio.create_task(tick())
            try:
                return await supervisor.run()
            finally:
                ticker.cancel()

        try:
            code = asyncio.run(main())
        finally:
            root.removeHandler(handler)
            root.removeHandler(file_handler)
            file_handler.close()
    if code != 0:
        raise StartError(f"the stack did not start; everything was stopped:\n{supervisor.error}")


class _DequeHandler(logging.Handler):
    def __init__(self, sink: collections.deque[str]) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(time.strftime("%H:%M:%S ") + record.getMessage())
