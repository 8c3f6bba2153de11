"""How spofless reaches one local PostgreSQL: its settings, OS user, tools and queries.

The base of spofless.pg.server's PostgresServer: running a PostgreSQL tool as the
OS user PostgreSQL runs as, a query on this server or another member, the files
spofless owns in a data directory (configuration, access rules, TLS files, the
passfile), and the replication slots. No decisions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
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
from spofless.pg._datadir import write_managed_files, write_private
from spofless.pg._errors import PgCommandError, PgSetupError
from spofless.pg._osuser import resolve_os_user, run_tool, traversable_by, user_kwargs
from spofless.pg._server_model import SUPERUSER, PgAuth, PgStatus, ServerSettings, Upstream
from spofless.pg._status_query import read_status

# One logger name for the whole adapter: users read "spofless.pg.server" in the logs.
logger = logging.getLogger("spofless.pg.server")

__all__ = ["PgAccess"]


class PgAccess:
    """One local PostgreSQL's settings, its OS user, its tools and queries."""

    def __init__(self, settings: ServerSettings, binaries: PgBinaries | None = None) -> None:
        self.settings = settings
        self.binaries = binaries or find_binaries(settings.bin_dir)
        self._user = resolve_os_user(settings.os_user)
        self._proc: asyncio.subprocess.Process | None = None
        self._upstream: Upstream | None = None
        self._sync_names = ""
        self.data_dir = settings.data_dir
        self.log_file = settings.log_file or self.data_dir.with_name(self.data_dir.name + ".log")

    @property
    def name(self) -> str:
        return self.settings.name

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

    def _write_private(self, path: Path, text: str) -> None:
        """A file only PostgreSQL's OS user can read (0600), written atomically."""
        write_private(path, text.encode(), self._owner())

    def _owner(self) -> tuple[int, int]:
        if self._user:
            return self._user.pw_uid, self._user.pw_gid
        return os.geteuid(), os.getegid()

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

    async def create_slots(self, slots: Sequence[str], on: Upstream | None = None) -> None:
        """Create the physical replication slots that do not exist (here or on `on`)."""
        for slot in slots:
            await self.query(
                "SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                (slot, slot),
                on=on,
            )

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
        if on is not None and on.read_write:
            extra["target_session_attrs"] = "read-write"
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
            async with asyncio.timeout(limit):
                return await run()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise PgCommandError(f"{self.name}: query on {host}:{port} failed: {exc}") from exc

    async def status(self) -> PgStatus:
        """Role, timeline and WAL positions of the running server; replication if primary."""
        return await read_status(self.query)

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
