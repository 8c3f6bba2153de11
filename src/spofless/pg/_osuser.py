"""Running PostgreSQL and its tools as an unprivileged OS user, tied to the agent's life.

PostgreSQL refuses to run as root: when the agent runs as root, the server and
its tools run as `os_user` (`postgres` by default). The server gets a
parent-death signal, so it never outlives the agent that renews its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spofless._linux import die_with_parent
from spofless.pg._errors import PgCommandError, PgSetupError


def tied_to(parent_pid: int) -> Callable[[], None]:
    """A preexec hook: the child gets SIGKILL when `parent_pid` (the agent) dies."""

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        # Runs after the child's setuid (a uid change clears the parent-death signal).
        if not die_with_parent(signal.SIGKILL, parent_pid):
            os._exit(126)  # the agent died before the request took effect

    return hook


def resolve_os_user(name: str | None) -> pwd.struct_passwd | None:
    """The OS user to run PostgreSQL as; None when it is the current user."""
    if name is None:
        if os.geteuid() != 0:
            return None
        name = "postgres"
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PgSetupError(
            f"OS user {name!r} does not exist; PostgreSQL refuses to run as root, so the agent "
            "runs it as an unprivileged user: create it or set os_user"
        ) from None
    if pw.pw_uid == os.geteuid():
        return None
    if pw.pw_uid == 0:
        raise PgSetupError("os_user must not be root: PostgreSQL refuses to run as root")
    if os.geteuid() != 0:
        raise PgSetupError(f"running PostgreSQL as {name!r} needs the agent to run as root")
    return pw


def traversable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` can reach `path` through its ancestors (search permission)."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == user.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def user_kwargs(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess keyword arguments that run a child as `user` (None: as ourselves)."""
    kw: dict[str, Any] = {"cwd": "/"}
    if user:
        env = dict(os.environ)
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        kw.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[], env=env)
    return kw


async def run_tool(
    path: str | Path,
    args: Sequence[str],
    *,
    user: pwd.struct_passwd | None,
    limit: float,
    what: str,
) -> str:
    """Run a tool as `user` within `limit` s; its output, or PgCommandError naming `what`."""
    proc = await asyncio.create_subprocess_exec(
        path,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # A tool must not outlive the agent: a pg_rewind left running by a killed agent
        # would race the one its successor starts on the same directory.
        preexec_fn=tied_to(os.getpid()),
        **user_kwargs(user),
    )
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except BaseException:  # a timeout or the agent cancelling a long action
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-4:])
        raise PgCommandError(f"{what} failed (exit {proc.returncode}): {tail}")
    return text
