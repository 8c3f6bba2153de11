"""Free ports for tests on a machine shared with other test runs.

Ports come from below the kernel's ephemeral range (ip_local_port_range, 32768
and up by default): a port picked by binding port 0 lies inside that range, so
an outgoing connection of any process may take it between the pick and the
use. Below it, only another server choosing the same port can, which the bind
test catches; and no port is handed out twice in one test run.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

_LOW = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HIGH = max(_LOW + 1000, min(32768, _ephemeral_low()))
_given: set[int] = set()
_lock = threading.Lock()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def port_block(n: int, avoid: Iterable[int] = ()) -> int:
    """A base port p with p .. p+n-1 all free on 127.0.0.1 (TCP and UDP) right now."""
    avoid = set(avoid)
    rng = random.Random()
    with _lock:
        for _ in range(500):
            base = rng.randrange(_LOW, _HIGH - n)
            block = range(base, base + n)
            if any(p in _given or p in avoid for p in block):
                continue
            if all(_bindable(p) for p in block):
                _given.update(block)
                return base
    raise RuntimeError(f"no block of {n} free ports between {_LOW} and {_HIGH}")


def free_port() -> int:
    """One free port on 127.0.0.1."""
    return port_block(1)


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (not consecutive)."""
    return [port_block(1) for _ in range(n)]
