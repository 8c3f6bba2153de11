"""`up --lab`: the stack in spofless.lab, every host of the file a network namespace.

    start_lab(topology, echo)       make (or reuse) the topology's lab; None without root
    recorded_lab(state_dir)         the lab a stack was started in (`<state dir>/lab.json`)
    forget_lab(state_dir)           after `down` removed it
    write_lab_topology(...)         the file spofless's own parts read in the lab
    enter_netns(name)               move this process into a namespace (foreground `up`)

In the lab every instance runs inside its host's namespace (`ip netns exec`,
which execs: the pid is the program's), at its host's lab address, and the
supervisor runs in the lab's control namespace, from where every host's
address is reachable, so its health checks see what a client in the lab sees.
spofless's own parts (`spofless lb FILE ...`) read a copy of the topology with
every host at its lab address, written next to the state. `lab.json` is
written before anything starts, so `down` finds the lab however `up` ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
from collections.abc import Callable
from pathlib import Path

from spofless.lab import Lab, LabUnavailable, check_available
from spofless.security import secrets_dir
from spofless.stack._errors import StackError
from spofless.topology import Topology

CLONE_NEWNET = 0x40000000
LAB_FILE = "lab.json"
LAB_TOPOLOGY_FILE = "lab-topology.yaml"
# The lab command's own state dir setting (`spofless lab --state-dir`), honoured here too.
LAB_STATE_ENV = "SPOFLESS_LAB_STATE_DIR"


def lab_state_dir() -> Path | None:
    value = os.environ.get(LAB_STATE_ENV)
    return Path(value) if value else None


def start_lab(topology: Topology, echo: Callable[[str], None]) -> Lab | None:
    """The topology's lab, made unless it is up already; None (said) without root or netns."""
    try:
        check_available()
    except LabUnavailable as exc:
        echo(f"no lab: {exc}; running every host on its own address instead (no --lab)")
        return None
    lab = Lab.of(topology, lab_state_dir())
    status = lab.status()
    if status["up"]:
        echo(f"using lab {lab.lab_id}, already up")
        return lab
    if "hosts" in status or status.get("leftover_namespaces"):
        lab.down()  # a broken or half-removed lab of this file: start afresh
    lab = Lab.up(topology, lab.state_dir, lab.lab_id)
    plan = lab.plan
    echo(f"lab {lab.lab_id} up: {len(plan.hosts)} hosts as network namespaces ({plan.subnet})")
    return lab


def record_lab(state_dir: Path, lab: Lab) -> None:
    path = state_dir / LAB_FILE
    path.write_text(json.dumps({"id": lab.lab_id, "state_dir": str(lab.state_dir)}) + "\n")


def recorded_lab(state_dir: Path) -> Lab | None:
    """The lab the stack of `state_dir` was started in, or None (not in a lab)."""
    try:
        data = json.loads((state_dir / LAB_FILE).read_text())
        return Lab(str(data["id"]), Path(data["state_dir"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StackError(f"{state_dir / LAB_FILE} cannot be read ({exc}); remove it") from None


def forget_lab(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / LAB_FILE).unlink()


def lab_topology_path(state_dir: Path) -> Path:
    return state_dir / LAB_TOPOLOGY_FILE


def write_lab_topology(state_dir: Path, topology: Topology) -> None:
    """The lab's copy of the topology (JSON, which YAML reads), for spofless's own parts.

    Its secrets stay where the original file's are (the copy lives elsewhere)."""
    data = dict(topology.data)
    data["security"] = {**(data.get("security") or {}), "secrets": str(secrets_dir(topology))}
    text = json.dumps(data, indent=1)
    path = lab_topology_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def enter_netns(netns: str) -> None:
    """Move the calling thread, and every thread it starts afterwards, into `netns`.

    Called before the foreground supervisor starts any thread or process, so that
    all of it lives in the lab's control namespace (os.setns is Python 3.12+).
    """
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise StackError(f"cannot enter network namespace {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)
