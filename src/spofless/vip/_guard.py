"""The address guard: a tiny child process that removes the address when its agent cannot.

The agent starts it at once and keeps its stdin open. It removes the address

- when its stdin reaches end of file: the agent died, even by kill -9 (the
  kernel closes the agent's end of the pipe), or exited;
- when the deadline the agent last sent passes: the agent is stopped
  (SIGSTOP), starved of CPU or stuck, and its claim may have lapsed while the
  address is still up. The agent arms the deadline with its claim's
  `valid_until` after every renewal, so the guard drops the address exactly when
  the agent would have.

Lines on stdin: `arm <deadline>` (time.monotonic() of this machine, shared by
every process on it) and `disarm`. It writes `removed` on stdout when it removed
the address. It runs in the agent's network namespace, which it inherits.

    python -m spofless.vip._guard ADDRESS/PREFIX INTERFACE
"""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import sys
import time

from spofless._linux import die_with_parent
from spofless.vip._address import Addresses


def main(argv: list[str]) -> int:
    address = ipaddress.IPv4Interface(argv[0])
    interface = argv[1]
    parent = int(argv[2]) if len(argv) > 2 else os.getppid()

    addresses = Addresses()

    def drop(why: str) -> None:
        if addresses.remove(address, interface):
            print("removed", why, flush=True)

    def on_term(signum: int, frame: object) -> None:
        drop("parent gone")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent stops first, then closes stdin
    # Belt and braces besides the pipe: SIGTERM when the parent dies.
    if not die_with_parent(signal.SIGTERM, parent):
        raise SystemExit(0)  # it died before the request took effect
    deadline: float | None = None
    buf = b""
    fd = sys.stdin.fileno()
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            if deadline is not None and time.monotonic() >= deadline:
                drop("deadline passed")
                deadline = None
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            drop("agent gone")
            return 0
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.decode().split()
            if words[:1] == ["arm"] and len(words) == 2:
                deadline = float(words[1])
            elif words[:1] == ["disarm"]:
                deadline = None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
