"""A port a command is about to listen on, checked first: `up`'s message, not a traceback."""

from __future__ import annotations

from spofless.stack import PortInUseError


def ensure_free(ports: list[tuple[str, str | None, int | None]]) -> None:
    """Raise PortInUseError (exit 2) naming every (what, address, port) already taken.

    Port 0 (any free port) and None (not listening) are skipped; an address
    that is not this machine's is left to the server, which says so itself.
    """
    from spofless.stack._preflight import bind_problem

    taken = []
    for what, host, port in ports:
        if not port:
            continue
        ip = host or "127.0.0.1"
        problem = bind_problem(ip, port)
        if problem is not None and problem.startswith("in use"):
            taken.append(f"{ip}:{port} ({what} port): {problem}")
    if taken:
        raise PortInUseError(
            "cannot start: ports are not available:\n  "
            + "\n  ".join(taken)
            + "\nstop what holds them or choose other ports"
        )
