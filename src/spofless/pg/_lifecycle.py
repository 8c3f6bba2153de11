"""Making, inspecting and repairing one member's data directory: initdb, clone,
crash recovery, pg_rewind and re-clone, and what is on disk. No decisions.

Every change that can be interrupted (a clone, a rewind) leaves a state the next
attempt recognises (see spofless.pg._repair): a clone is made beside the data
directory and renamed into place; a rewind saves the WAL it may overwrite first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import psutil
from psycopg import sql

from spofless.pg._access import PgAccess
from spofless.pg._datadir import (
    CLEAN_STATES,
    PRIMARY_STATES,
    ControlData,
    clone_only_mark,
    data_version,
    disk_position,
    leftovers,
    parse_controldata,
    read_history,
    timelines_at,
)
from spofless.pg._errors import PgCommandError, PgSetupError
from spofless.pg._repair import (
    clone_dir,
    forget_rewind,
    keep_aside,
    reclone_blocked,
    restore_wal,
    rewind_dir,
    save_wal,
)
from spofless.pg._server_model import REPLICATION_USER, REWIND_USER, SUPERUSER, Upstream, slot_name
from spofless.pg.view import DiskPosition, TimelineHistory, format_lsn

# One logger name for the whole adapter: users read "spofless.pg.server" in the logs.
logger = logging.getLogger("spofless.pg.server")

# libpq's words when pg_rewind's connection to its source failed (the source stopped or
# restarted, a link dropped): DataDirLifecycle.rewind_source_lost.
_SOURCE_LOST = (
    "server closed the connection unexpectedly",
    "could not connect to server",
    "connection to server at",
    "terminating connection due to administrator command",
    "could not receive data from server",
    "no connection to the server",
    "the database system is shutting down",
    "the database system is starting up",
)
LEFTOVER_BOUND = 5.0  # seconds for a killed postmaster's children to go

__all__ = ["DataDirLifecycle"]


class DataDirLifecycle(PgAccess):
    """The data directory of one member, created, inspected and repaired."""

    def clone_only(self) -> bool:
        """Whether the member is marked to clone a restored cluster (see
        spofless.pg._datadir.clone_only_mark): without data it never bootstraps."""
        return clone_only_mark(self.data_dir).exists()

    def has_data(self) -> bool:
        """True when the data directory holds a cluster of the binaries' version.

        Raises PgSetupError for a foreign, wrong-version or wrongly owned directory.
        """
        if data_version(self.data_dir, self.binaries.major) is None:
            return False
        uid = self._user.pw_uid if self._user else os.geteuid()
        owner = self.data_dir.stat().st_uid
        if owner != uid:
            raise PgSetupError(
                f"data directory {self.data_dir} is owned by uid {owner}, not by the user "
                f"PostgreSQL runs as (uid {uid}): chown -R it or set os_user"
            )
        return True

    async def controldata(self) -> ControlData:
        out = await self._tool("pg_controldata", "-D", str(self.data_dir), limit=30)
        return parse_controldata(out)

    async def was_primary(self) -> bool:
        """The stopped data directory was last a writable primary (see LocalState)."""
        if (self.data_dir / "standby.signal").exists():
            return False
        return (await self.controldata()).state in PRIMARY_STATES

    async def disk(self) -> DiskPosition:
        """How far the stopped data directory's WAL goes (spofless.pg.rejoin)."""
        cd = await self.controldata()
        return disk_position(cd, (self.data_dir / "backup_label").exists())

    @property
    def rewinding(self) -> bool:
        """A pg_rewind of this data directory was started and has not finished."""
        return rewind_dir(self.data_dir).exists()

    async def initdb(self) -> None:
        """Create a new cluster in the (absent or empty) data directory."""
        self._prepare_empty_dir()
        auth = self.settings.auth
        how = ["--auth=trust"]
        pwfile = self.data_dir.with_name(self.data_dir.name + ".initdb-pw")
        if auth is not None:
            # The superuser's password from the start; local connections by peer only.
            self._write_private(pwfile, auth.superuser_password.get_secret_value() + "\n")
            how = ["--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            await self._tool(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                *how,
                "-E",
                "UTF8",
                "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        logger.info("%s: initdb done in %s", self.name, self.data_dir)

    async def create_roles(self) -> None:
        """The replication and pg_rewind users, with their passwords (on the new primary;
        they reach the replicas with the WAL). pg_rewind's user may read files only."""
        auth = self.settings.auth
        if auth is None:
            return
        for user, secret, attrs in (
            (REPLICATION_USER, auth.replication_password, "LOGIN REPLICATION"),
            (REWIND_USER, auth.rewind_password, "LOGIN"),
        ):
            exists = await self.query("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = "ALTER" if exists else "CREATE"
            stmt = sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
                sql.SQL(verb),
                sql.Identifier(user),
                sql.SQL(attrs),
                sql.Literal(secret.get_secret_value()),
            )
            await self.query(stmt.as_string())
        for fn in (
            "pg_ls_dir(text, boolean, boolean)",
            "pg_stat_file(text, boolean)",
            "pg_read_binary_file(text)",
            "pg_read_binary_file(text, bigint, bigint, boolean)",
        ):
            await self.query(f"GRANT EXECUTE ON FUNCTION pg_catalog.{fn} TO {REWIND_USER}")

    async def clone(self, source: Upstream) -> None:
        """pg_basebackup from `source` through this member's replication slot.

        The copy is made in `<data>.clone` and renamed into place once complete: a
        clone killed halfway never leaves a data directory that looks whole.
        """
        self._prepare_empty_dir()
        tmp = clone_dir(self.data_dir)
        if tmp.exists():
            logger.warning("%s: removing %s, left by an interrupted clone", self.name, tmp)
            await asyncio.to_thread(shutil.rmtree, tmp)
        self._make_owned_dir(tmp)
        if self.settings.auth is not None:
            self._write_passfile(self.settings.auth)
        slot = source.slot or slot_name(self.name)
        await self.create_slots([slot], on=source)
        await self._tool(
            "pg_basebackup",
            "-D",
            str(tmp),
            "-d",
            self._conninfo(source, REPLICATION_USER),
            "-X",
            "stream",
            "-S",
            slot,
            "-c",
            "fast",
            "--no-password",
        )
        # A fresh copy says "in production": mark it a standby so it never starts as a primary.
        self._write_managed(tmp, source, standby=True)
        self.data_dir.rmdir()  # empty (checked above); the copy takes its place
        tmp.rename(self.data_dir)
        logger.info("%s: cloned from %s", self.name, source.name)

    def _kill_leftovers(self) -> None:
        """SIGKILL what a killed postmaster left on the data directory (see `leftovers`),
        and wait a bounded time for it to be gone."""
        procs = leftovers(self.data_dir)
        if not procs:
            return
        names = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                names.append(f"{proc.pid} ({' '.join(proc.cmdline())[:60]})")
                proc.kill()
        _, alive = psutil.wait_procs(procs, timeout=LEFTOVER_BOUND)
        logger.warning(
            "%s: killed what the last postmaster left running: %s", self.name, ", ".join(names)
        )
        if alive:
            raise PgCommandError(
                f"{self.name}: processes of the last postmaster do not exit: "
                + ", ".join(str(p.pid) for p in alive)
            )

    async def crash_recover(self) -> None:
        """Bring a crashed data directory to a clean shutdown: crash recovery in
        single-user mode, with the recovery signal files removed (single-user mode
        refuses standby mode; spofless writes standby.signal again before a start).
        Its shutdown checkpoint then marks where its WAL ends."""
        if self.running:
            raise PgCommandError(f"{self.name}: cannot run crash recovery on a running server")
        self._kill_leftovers()  # a crashed postmaster's children hold its shared memory
        for f in ("standby.signal", "recovery.signal"):
            (self.data_dir / f).unlink(missing_ok=True)
        await self._tool(
            "postgres",
            "--single",
            "-D",
            str(self.data_dir),
            "-c",
            "archive_mode=off",  # never archive what may be divergent WAL
            "postgres",
            limit=self.settings.start_timeout,
        )
        cd = await self.controldata()
        logger.info(
            "%s: crash recovery done: %s, WAL ends at %s on timeline %s",
            self.name,
            cd.state,
            format_lsn(cd.checkpoint_lsn),
            cd.timeline,
        )

    @staticmethod
    def rewind_source_lost(error: str) -> bool:
        """Whether a failed pg_rewind lost its source mid-way (it restarted, a link
        dropped): the rewind is restartable and runs again once the source answers,
        unlike one that failed on the data itself."""
        return any(words in error for words in _SOURCE_LOST)

    async def rewind(self, source: Upstream) -> None:
        """pg_rewind the stopped data directory onto `source`'s timeline; safe to call
        again after it was interrupted (see spofless.pg._repair)."""
        if self.running:
            raise PgCommandError(f"{self.name}: cannot rewind a running server")
        st = self.data_dir.stat()
        if self.rewinding:
            cd = await self.controldata()
            if cd.state == "in archive recovery" and (self.data_dir / "backup_label").exists():
                logger.info("%s: the interrupted pg_rewind had finished", self.name)
                self._finish_rewind(source)
                return
            n = await asyncio.to_thread(restore_wal, self.data_dir, (st.st_uid, st.st_gid))
            logger.warning(
                "%s: an interrupted pg_rewind: %d saved WAL files put back, running it again",
                self.name,
                n,
            )
        else:
            cd = await self.controldata()
            if cd.state not in CLEAN_STATES:
                await self.crash_recover()
                cd = await self.controldata()
            end = max(p for p in (cd.checkpoint_lsn, cd.min_recovery_lsn, 0) if p is not None)
            saved = await asyncio.to_thread(save_wal, self.data_dir, end, cd.segment_size)
            logger.info("%s: saved %d MiB of WAL before pg_rewind", self.name, saved >> 20)
        if self.settings.auth is not None:
            self._write_passfile(self.settings.auth)
        # With a WAL archive (backups), the member's own WAL that was recycled since the
        # divergence is fetched back from it by the restore_command in its configuration.
        archive = (
            ["--restore-target-wal"] if self.settings.parameters.get("restore_command") else []
        )
        await self._tool(
            "pg_rewind",
            "-D",
            str(self.data_dir),
            f"--source-server={self._conninfo(source, REWIND_USER, dbname='postgres')}",
            *archive,
        )
        self._finish_rewind(source)

    def _finish_rewind(self, source: Upstream) -> None:
        # pg_rewind copied the source's files: make sure this never starts as a primary.
        self._write_managed(self.data_dir, source, standby=True)
        forget_rewind(self.data_dir)
        logger.info("%s: rewound onto %s", self.name, source.name)

    def reclone_blocked(self, keep: int) -> str | None:
        """Why keeping the data directory aside and re-cloning is impossible now."""
        return reclone_blocked(self.data_dir, keep)

    async def keep_aside_and_clone(self, source: Upstream, keep: int) -> Path:
        """Rename the diverged data directory to `<data>.old-<time>` (never deleted;
        at most `keep` such copies), then clone afresh. The kept copy's path."""
        if self.running:
            raise PgCommandError(f"{self.name}: cannot re-clone a running server")
        why = await asyncio.to_thread(reclone_blocked, self.data_dir, keep)
        if why is not None:
            raise PgCommandError(f"{self.name}: cannot re-clone: {why}")
        kept = keep_aside(self.data_dir)
        forget_rewind(self.data_dir)
        logger.warning("%s: diverged data directory kept as %s; re-cloning", self.name, kept)
        await self.clone(source)
        return kept

    def timelines_at(
        self, positions: Sequence[int | None], segment_size: int
    ) -> tuple[int | None, ...]:
        """The timeline a standby has each position on (see _datadir.timelines_at)."""
        return timelines_at(self.data_dir, positions, segment_size)

    def history(self, timeline: int) -> TimelineHistory:
        """The running primary's timeline history, from its `pg_wal/<TL>.history`."""
        try:
            return read_history(self.data_dir, timeline)
        except (OSError, ValueError) as exc:
            raise PgCommandError(
                f"{self.name}: cannot read timeline {timeline}'s history: {exc}"
            ) from exc

    def _prepare_empty_dir(self) -> None:
        if data_version(self.data_dir, self.binaries.major) is not None:
            raise PgSetupError(f"{self.data_dir} already holds a cluster; refusing to overwrite it")
        self._make_owned_dir(self.data_dir)
