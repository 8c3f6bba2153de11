"""Linux process primitives shared by everything that starts children: the parent-death
signal, and the pid a program's pidfile names when that program still runs.

A child that must not outlive the process that started it (PostgreSQL under
its agent, instances under the supervisor, the VIP guard under its agent)
asks the kernel for a signal when its parent dies. The signal follows the
*thread* that forked, and it is cleared by a uid change: set it after setuid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_PR_SET_PDEATHSIG = 1

# Loaded in the parent: a child between fork and exec only calls into it.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent(sig: int, parent_pid: int) -> bool:
    """Have the kernel send `sig` to this process when its parent dies.

    False when that cannot be promised: prctl failed, or the parent is no
    longer `parent_pid` (it died before the request took effect).
    """
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        return False
    return os.getppid() == parent_pid


def pid_from_file(path: Path, names: tuple[str, ...]) -> int | None:
    """The pid on the first line of `path` when a live process of one of `names` has it."""
    try:
        pid = int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # A stale file names a dead pid, or one since reused by another program.
    name, _, rest = stat.partition(" (")[2].rpartition(")")
    if rest.split()[:1] == ["Z"] or name not in names:
        return None
    return pid
