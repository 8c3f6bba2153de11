"""Making and unmaking a lab: the thin I/O that carries out a LabPlan.

`apply` records the plan in the state file first, then makes the namespaces, the switch
(bridges, cables, links) and each host's `eth0`; `teardown` stops what runs in the lab's
namespaces and deletes them, which takes every interface of the lab with them. Both are
safe to repeat, and `teardown` also finds a half-made lab by its namespace names.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from spofless.lab import _netns as ns
from spofless.lab._errors import LabError
from spofless.lab._plan import HOST_IFNAME, Impairment, LabPlan, netns_prefix, with_backend
from spofless.lab._state import (
    LabState,
    load_state,
    relay_log_path,
    relay_ready_path,
    remove_state,
    save_state,
    state_path,
)

logger = logging.getLogger(__name__)

RELAY_START_TIMEOUT = 10.0  # seconds for the relay to open its taps
STOP_GRACE = 2.0  # seconds a process left in the lab gets between SIGTERM and SIGKILL
NETEM_LIMIT = 100_000  # packets netem may hold; its default 1000 drops at high delay x rate


def apply(plan: LabPlan, source: str, state_dir: Path) -> LabState:
    """Make the lab of `plan`; its state. LabError when it is already up."""
    ns.check_available()
    existing = load_state(state_dir, plan.lab_id)
    if existing is not None or ns.netns_names(netns_prefix(plan.lab_id)):
        if existing is not None and existing.status == "up" and is_up(existing):
            raise LabError(
                f"lab {plan.lab_id} of {existing.source} is already up "
                f"(state {state_path(state_dir, plan.lab_id)}); take it down first"
            )
        logger.info("lab %s: removing the remains of an earlier lab first", plan.lab_id)
        teardown(plan.lab_id, state_dir)
    state = LabState(plan=plan, source=source)
    save_state(state_dir, state)
    try:
        for name in plan.namespaces:
            ns.add_netns(name)
        backend = plan.backend
        if backend == "auto":
            backend = "netem" if ns.netem_supported(plan.switch) else "relay"
        state.plan = with_backend(plan, backend)
        save_state(state_dir, state)
        _make_switch(state.plan)
        for host in state.plan.machines():
            ns.ip_batch(
                host.netns,
                [
                    "link set lo up",
                    f"addr add {host.address}/{plan.prefixlen} dev {HOST_IFNAME}",
                    f"link set {HOST_IFNAME} up",
                ],
            )
        if backend == "netem":
            apply_netem(state)
        else:
            state.relay_pid = _start_relay(state, state_dir)
        _attach_links(state.plan)
        state.status = "up"
        save_state(state_dir, state)
    except BaseException:
        logger.error("lab %s: apply failed, tearing down what was made", plan.lab_id)
        teardown(plan.lab_id, state_dir)
        raise
    logger.info(
        "lab %s up: %d hosts, %d links (%s)", plan.lab_id, len(plan.hosts), len(plan.links), backend
    )
    return state


def _make_switch(plan: LabPlan) -> None:
    cmds = ["link set lo up"]
    for br in plan.bridges:
        cmds += [f"link add {br} type bridge", f"link set {br} up"]
    for host in plan.machines():
        cmds += [
            f"link add {host.port} type veth peer name {HOST_IFNAME} netns {host.netns}",
            f"link set {host.port} master {host.bridge}",
            f"link set {host.port} up",
        ]
    for link in plan.links:
        if plan.backend == "netem":
            cmds.append(f"link add {link.lower} type veth peer name {link.upper}")
        else:
            cmds += [
                f"tuntap add dev {link.lower} mode tap",
                f"tuntap add dev {link.upper} mode tap",
            ]
    ns.ip_batch(plan.switch, cmds)


def _attach_links(plan: LabPlan) -> None:
    """Plug the links into their bridges last, once whatever carries them is running."""
    cmds: list[str] = []
    for link in plan.links:
        cmds += [
            f"link set {link.lower} master {link.lower_bridge}",
            f"link set {link.upper} master {link.upper_bridge}",
            f"link set {link.lower} up",
            f"link set {link.upper} up",
        ]
    ns.ip_batch(plan.switch, cmds)


def netem_args(imp: Impairment) -> str:
    out = f"netem limit {NETEM_LIMIT} delay {imp.delay_ms:g}ms"
    if imp.jitter_ms:
        out += f" {imp.jitter_ms:g}ms"
    if imp.loss_pct:
        out += f" loss {imp.loss_pct:g}%"
    return out


def apply_netem(state: LabState) -> None:
    """Set every link's netem qdiscs (both ends) to its impairment now."""
    cmds = []
    for link in state.plan.links:
        args = netem_args(state.effective(link))
        cmds += [f"qdisc replace dev {end} root {args}" for end in (link.lower, link.upper)]
    ns.ip_batch(state.plan.switch, cmds, tool="tc")


def _start_relay(state: LabState, state_dir: Path) -> int:
    plan = state.plan
    ready = relay_ready_path(state_dir, plan.lab_id)
    ready.unlink(missing_ok=True)
    argv = ns.exec_argv(
        plan.switch,
        [sys.executable, "-m", "spofless.lab._relay", str(state_path(state_dir, plan.lab_id))],
    )
    # posix_spawn, not Popen: the relay outlives this call (and the CLI process), and a
    # Popen object dropped while its child runs is a resource leak by Python's rules.
    log = os.open(relay_log_path(state_dir, plan.lab_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)
    state.relay_pid = pid
    save_state(state_dir, state)
    deadline = time.monotonic() + RELAY_START_TIMEOUT
    while not ready.exists():
        if _reap(pid) is not None:
            log_text = relay_log_path(state_dir, plan.lab_id).read_text(errors="replace")
            raise LabError(f"the lab's link relay exited: {log_text[-500:]}")
        if time.monotonic() > deadline:
            raise LabError(f"the lab's link relay did not start in {RELAY_START_TIMEOUT:.0f} s")
        time.sleep(0.02)
    logger.info("lab %s: link relay pid %d", plan.lab_id, pid)
    return pid


def _reap(pid: int) -> int | None:
    """The exit status of `pid` if it is our child and has exited, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None  # not our child (another process made the lab): init reaps it
    return status if done else None


def relay_alive(state: LabState) -> bool:
    """Whether the state's relay pid is still our relay (not a reused pid)."""
    pid = state.relay_pid
    if pid is None:
        return False
    argv = ns.cmdline(pid)
    return "spofless.lab._relay" in argv and any(state.plan.lab_id in a for a in argv)


def is_up(state: LabState) -> bool:
    """Every namespace there, and the relay running when the links need it."""
    if not all(ns.netns_exists(n) for n in state.plan.namespaces):
        return False
    return state.plan.backend != "relay" or relay_alive(state)


def teardown(lab_id: str, state_dir: Path) -> list[str]:
    """Remove the lab: its processes, namespaces (and with them every link) and state.

    Idempotent; works from the state file or, without one, from the namespace names.
    Returns the namespaces it deleted.
    """
    ns.check_available()
    state = load_state(state_dir, lab_id)
    names = list(state.plan.namespaces) if state is not None else []
    names += [n for n in ns.netns_names(netns_prefix(lab_id)) if n not in names]
    relay = state.relay_pid if state is not None else None
    if state is not None and relay is not None and relay_alive(state):
        ns.signal_pids([relay], signal.SIGTERM)
    removed: list[str] = []
    for name in names:  # hosts before the switch: their cables end there
        if ns.netns_exists(name):
            stopped = ns.stop_netns_processes(name, STOP_GRACE)
            if stopped:
                logger.info("lab %s: stopped %d process(es) left in %s", lab_id, stopped, name)
        if ns.delete_netns(name):
            removed.append(name)
    if relay is not None:
        _reap(relay)
    remove_state(state_dir, lab_id)
    logger.info("lab %s down: removed %d namespace(s)", lab_id, len(removed))
    return removed
