"""Linux process primitives shared by everything that starts children: the parent-death signal.

A child that must not outlive the process that started it (PostgreSQL under
its agent, instances under the supervisor, the VIP guard under its agent)
asks the kernel for a signal when its parent dies. The signal follows the
*thread* that forked, and it is cleared by a uid change: set it after setuid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

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
