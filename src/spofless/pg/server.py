"""The thin adapter to one local PostgreSQL: files, processes and queries. No decisions.

PostgreSQL runs as a child of the agent (never through pg_ctl, which would
detach it) with a parent-death signal: when the agent dies, for any reason,
the kernel SIGKILLs the postmaster, so PostgreSQL never outlives the agent that
renews its leader lease. Start the server from the thread that lives as long
as the agent (the event loop's): the signal follows the thread that forked.

When the agent runs as root, PostgreSQL and its tools run as an unprivileged
OS user (`postgres` by default): PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Literal

from spofless.pg._datadir import postmaster_pid
from spofless.pg._errors import PgCommandError, PgSetupError
from spofless.pg._lifecycle import DataDirLifecycle
from spofless.pg._osuser import tied_to
from spofless.pg._server_model import PgStatus, ReplicationRow, ServerSettings, Upstream, slot_name

logger = logging.getLogger(__name__)

__all__ = [
    "PgStatus",
    "PostgresServer",
    "ReplicationRow",
    "ServerSettings",
    "StopMode",
    "Upstream",
    "slot_name",
]

StopMode = Literal["smart", "fast", "immediate"]
IMMEDIATE_STOP_BOUND = 5.0  # seconds before an immediate stop becomes a SIGKILL
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class PostgresServer(DataDirLifecycle):
    """One local PostgreSQL instance: initdb, clone, rewind, start, stop, promote, query.

    Reaching it is spofless.pg._access, its data directory spofless.pg._lifecycle;
    this class runs the server and changes it while it runs."""

    async def start(self, *, upstream: Upstream | None = None, standby: bool = True) -> None:
        """Start as a standby following `upstream` (None: no upstream) or as a primary.

        Starting a standby data directory with standby=False ends recovery (a promotion
        at startup). Waits until the server accepts connections.
        """
        if self.running:
            raise PgCommandError(f"{self.name}: PostgreSQL is already running")
        self._check_no_foreign_postmaster()
        self._kill_leftovers()
        self._upstream = upstream if standby else None
        if self.settings.auth is not None:
            self._make_owned_dir(self.settings.auth.socket_dir)
        if self._upstream is not None:
            await self._ensure_slot_on(self._upstream)
        self._write_managed(self.data_dir, self._upstream, standby=standby)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.binaries.tool("postgres"),
                "-D",
                str(self.data_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # the terminal's Ctrl-C goes to the agent only
                preexec_fn=tied_to(os.getpid()),
                **self._user_kwargs(),
            )
        logger.info(
            "%s: started PostgreSQL pid %d as %s",
            self.name,
            self._proc.pid,
            f"replica of {upstream.name}"
            if standby and upstream
            else ("read-only standby" if standby else "primary"),
        )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.start_timeout
        while True:
            if not self.running:
                raise PgCommandError(
                    f"{self.name}: PostgreSQL exited during start; log tail: {self.log_tail()}"
                )
            with contextlib.suppress(PgCommandError):
                await self.query("SELECT 1", limit=1.0)
                return
            if asyncio.get_running_loop().time() > deadline:
                raise PgCommandError(
                    f"{self.name}: PostgreSQL not ready after {self.settings.start_timeout}s; "
                    f"log tail: {self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self, mode: StopMode = "fast") -> None:
        """Stop the child postmaster; SIGKILL it when it overruns stop_timeout."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(_STOP_SIGNALS[mode])
        # An immediate stop takes milliseconds; one that does not end is stuck (seen after
        # a freeze): it must not keep a deposed primary half alive for stop_timeout.
        bound = self.settings.stop_timeout
        if mode == "immediate":
            bound = min(bound, IMMEDIATE_STOP_BOUND)
        try:
            async with asyncio.timeout(bound):
                await proc.wait()
        except TimeoutError:
            logger.warning("%s: %s stop overran, killing pid %d", self.name, mode, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        logger.info("%s: PostgreSQL stopped (%s)", self.name, mode)

    def signal_stop(self, mode: StopMode = "immediate") -> None:
        """Send the stop signal now, without waiting: for fencing from a sync callback."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(_STOP_SIGNALS[mode])

    def kill(self) -> None:
        """SIGKILL the postmaster at once (last resort, and for tests)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def _check_no_foreign_postmaster(self) -> None:
        pid = postmaster_pid(self.data_dir)
        if pid is not None:
            raise PgSetupError(
                f"{self.name}: a PostgreSQL not started by this agent (pid {pid}) runs on "
                f"{self.data_dir}: stop it first"
            )

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    async def promote(self, wait_seconds: int = 30) -> None:
        """Promote the running standby and wait until it accepts writes."""
        row = await self.query(
            "SELECT pg_promote(true, %s)", (wait_seconds,), limit=wait_seconds + 2
        )
        if not row or not row[0][0]:
            raise PgCommandError(f"{self.name}: promotion did not finish in {wait_seconds}s")
        self._upstream = None
        logger.info("%s: promoted", self.name)

    async def follow(self, upstream: Upstream | None) -> None:
        """Point the running standby at `upstream` (primary_conninfo reloads in PG 13+)."""
        self._upstream = upstream
        if upstream is not None:
            await self._ensure_slot_on(upstream)
        self._write_managed(self.data_dir, upstream, standby=True)
        await self.query("SELECT pg_reload_conf()")

    async def _ensure_slot_on(self, upstream: Upstream) -> None:
        """Make this member's slot on `upstream`, as clone does. A leader creates slots only
        for the members it sees in etcd, so a member back after its key expired (an old
        primary rejoining) would otherwise wait for a slot that never comes, unable to stream
        and so unable to reach a consistent state. Best effort: the leader's loop makes it
        too once this member publishes itself."""
        try:
            await self.create_slots([upstream.slot or slot_name(self.name)], on=upstream)
        except PgCommandError as exc:
            logger.warning("%s: cannot make my slot on %s: %s", self.name, upstream.name, exc)

    @property
    def synchronous_standby_names(self) -> str:
        """The value last set (and written to the managed configuration)."""
        return self._sync_names

    async def set_synchronous_standby_names(self, value: str) -> None:
        if value == self._sync_names:
            return
        self._sync_names = value
        # Keep standby.signal as it is: a standby about to be promoted must keep it (the
        # startup process removes it itself when it ends recovery).
        standby = (self.data_dir / "standby.signal").exists()
        self._write_managed(self.data_dir, self._upstream, standby=standby)
        await self.query("SELECT pg_reload_conf()")
        logger.info("%s: synchronous_standby_names = %r", self.name, value)
