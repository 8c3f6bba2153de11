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
import pwd
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from spofless.pg._binaries import PgBinaries, find_binaries
from spofless.pg._config import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    hba_text,
    ident_text,
    managed_conf,
    passfile_text,
)
from spofless.pg._datadir import (
    CLEAN_STATES,
    PRIMARY_STATES,
    ControlData,
    data_version,
    disk_position,
    parse_controldata,
    read_history,
    timelines_at,
    write_managed_files,
    write_private,
)
from spofless.pg._errors import PgCommandError, PgSetupError
from spofless.pg._osuser import (
    resolve_os_user,
    run_tool,
    tied_to,
    traversable_by,
    user_kwargs,
)
from spofless.pg._repair import (
    clone_dir,
    forget_rewind,
    keep_aside,
    reclone_blocked,
    restore_wal,
    rewind_dir,
    save_wal,
)
from spofless.pg._server_model import (
    REPLICATION_USER,
    REWIND_USER,
    SUPERUSER,
    PgAuth,
    PgStatus,
    ReplicationRow,
    ServerSettings,
    Upstream,
    slot_name,
)
from spofless.pg._status_query import read_status
from spofless.pg.view import DiskPosition, TimelineHistory, format_lsn

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


class PostgresServer:
    """One local PostgreSQL instance: initdb, clone, rewind, start, stop, promote, query."""

    def __init__(self, settings: ServerSettings, binaries: PgBinaries | None = None) -> None:
        self.settings = settings
        self.binaries = binaries or find_binaries(settings.bin_dir)
        self._user = resolve_os_user(settings.os_user)
        self._proc: asyncio.subprocess.Process | None = None
        self._upstream: Upstream | None = None
        self._sync_names = ""
        self.data_dir = settings.data_dir
        self.log_file = settings.log_file or self.data_dir.with_name(self.data_dir.name + ".log")

    # -- what is on disk ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

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

    # -- creating a data directory --------------------------------------------------------

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

    def _write_private(self, path: Path, text: str) -> None:
        """A file only PostgreSQL's OS user can read (0600), written atomically."""
        write_private(path, text.encode(), self._owner())

    def _owner(self) -> tuple[int, int]:
        if self._user:
            return self._user.pw_uid, self._user.pw_gid
        return os.geteuid(), os.getegid()

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
        slot = slot_name(self.name)
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

    async def disk(self) -> DiskPosition:
        """How far the stopped data directory's WAL goes (spofless.pg.rejoin)."""
        cd = await self.controldata()
        return disk_position(cd, (self.data_dir / "backup_label").exists())

    @property
    def rewinding(self) -> bool:
        """A pg_rewind of this data directory was started and has not finished."""
        return rewind_dir(self.data_dir).exists()

    async def crash_recover(self) -> None:
        """Bring a crashed data directory to a clean shutdown: crash recovery in
        single-user mode, with the recovery signal files removed (single-user mode
        refuses standby mode; spofless writes standby.signal again before a start).
        Its shutdown checkpoint then marks where its WAL ends."""
        if self.running:
            raise PgCommandError(f"{self.name}: cannot run crash recovery on a running server")
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

    def _make_owned_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
        if self._user:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
            if not os.access(path.parent, os.X_OK) or not traversable_by(path, self._user):
                raise PgSetupError(
                    f"OS user {self._user.pw_name} cannot reach {self.data_dir}: make its "
                    "parent directories traversable (chmod o+x)"
                )

    # -- running ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    @property
    def upstream(self) -> Upstream | None:
        """The server this one was last configured to follow (None: none, or primary)."""
        return self._upstream

    def _conf(self, upstream: Upstream | None) -> dict[str, str | int | bool]:
        return managed_conf(self.settings, upstream, self._sync_names)

    def _write_managed(self, data_dir: Path, upstream: Upstream | None, standby: bool) -> None:
        """The configuration, access rules, TLS files and standby signal spofless owns."""
        auth = self.settings.auth
        extra: dict[str, bytes] = {}
        ident = None
        if auth is not None:
            ident = ident_text([self._os_user_name(), pwd.getpwuid(os.geteuid()).pw_name])
            if auth.tls is not None:
                extra = {
                    SERVER_CERT: auth.tls.cert.read_bytes(),
                    SERVER_KEY: auth.tls.key.read_bytes(),
                    CA_CERT: auth.tls.ca.read_bytes(),
                }
            self._write_passfile(auth)
        write_managed_files(
            data_dir,
            self._conf(upstream),
            standby=standby,
            hba=hba_text(self.settings),
            ident=ident,
            extra=extra,
        )

    def _conninfo(self, source: Upstream, user: str, dbname: str | None = None) -> str:
        auth = self.settings.auth
        return source.conninfo(self.name, dbname, user=user if auth else SUPERUSER, auth=auth)

    def _os_user_name(self) -> str:
        return self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name

    def _write_passfile(self, auth: PgAuth) -> None:
        """The .pgpass that pg_basebackup, pg_rewind and the WAL receiver read."""
        auth.passfile.parent.mkdir(parents=True, exist_ok=True)
        self._write_private(auth.passfile, passfile_text(auth))
        if auth.tls is not None:
            self._write_private(auth.client_ca, auth.tls.ca.read_text())

    async def start(self, *, upstream: Upstream | None = None, standby: bool = True) -> None:
        """Start as a standby following `upstream` (None: no upstream) or as a primary.

        Starting a standby data directory with standby=False ends recovery (a promotion
        at startup). Waits until the server accepts connections.
        """
        if self.running:
            raise PgCommandError(f"{self.name}: PostgreSQL is already running")
        self._check_no_foreign_postmaster()
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
            await asyncio.wait_for(proc.wait(), bound)
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
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"postgres" in cmdline:
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

    # -- changing a running server --------------------------------------------------------

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
            await self.create_slots([slot_name(self.name)], on=upstream)
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

    async def create_slots(self, slots: Sequence[str], on: Upstream | None = None) -> None:
        """Create the physical replication slots that do not exist (here or on `on`)."""
        for slot in slots:
            await self.query(
                "SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                (slot, slot),
                on=on,
            )

    # -- queries --------------------------------------------------------------------------

    async def query(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        on: Upstream | None = None,
        limit: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit on this server (or on `on`), within `limit` s.

        With authentication, this server is reached over its Unix socket (peer), another
        as `postgres` with its password (and TLS, verify-full, when on)."""
        host, port = (on.host, on.port) if on else (self.settings.host, self.settings.port)
        limit = limit or self.settings.query_timeout
        auth = self.settings.auth
        extra: dict[str, str] = {}
        if auth is not None and on is None:
            host = str(auth.socket_dir)
        elif auth is not None:
            extra["password"] = auth.superuser_password.get_secret_value()
            if auth.tls is not None:
                extra.update(sslmode="verify-full", sslrootcert=str(auth.tls.ca))

        async def run() -> list[tuple[Any, ...]]:
            async with await psycopg.AsyncConnection.connect(
                make_conninfo("", **extra),
                host=host,
                port=port,
                user=SUPERUSER,
                dbname="postgres",
                connect_timeout=max(2, int(limit)),
                autocommit=True,
                application_name=f"spofless-agent-{self.name}",
            ) as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall() if cur.description else []

        try:
            return await asyncio.wait_for(run(), limit)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise PgCommandError(f"{self.name}: query on {host}:{port} failed: {exc}") from exc

    async def status(self) -> PgStatus:
        """Role, timeline and WAL positions of the running server; replication if primary."""
        return await read_status(self.query)

    # -- running tools --------------------------------------------------------------------

    def _user_kwargs(self) -> dict[str, Any]:
        return user_kwargs(self._user)

    async def _tool(self, tool: str, *args: str, limit: float | None = None) -> str:
        """Run a PostgreSQL tool as the OS user within `limit` s; its output, or PgCommandError."""
        return await run_tool(
            self.binaries.tool(tool),
            args,
            user=self._user,
            limit=limit or self.settings.tool_timeout,
            what=f"{self.name}: {tool}",
        )
