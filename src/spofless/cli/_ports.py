"""A port a command is about to listen on, checked first: `up`'s message, not a traceback."""

from __future__ import annotations

import errno
import socket

from spofless.stack import PortInUseError


def ensure_free(ports: list[tuple[str, str | None, int | None]]) -> None:
    """Raise PortInUseError (exit 2) naming every (what, address, port) already taken.

    Port 0 (any free port) and None (not listening) are skipped; an address
    that is not this machine's is left to the server, which says so itself.
    """
    from spofless.stack._preflight import port_owner

    taken = []
    for what, host, port in ports:
        if not port:
            continue
        ip = host or "127.0.0.1"
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # As servers do, so that connections in TIME_WAIT do not count as taken.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    taken.append(f"{ip}:{port} ({what} port): in use by {port_owner(port)}")
    if taken:
        raise PortInUseError(
            "cannot start: ports are not available:\n  "
            + "\n  ".join(taken)
            + "\nstop what holds them or choose other ports"
        )
