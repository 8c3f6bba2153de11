"""Real PostgreSQL servers for integration tests: free ports, private dirs, always stopped.

The fixtures `pg_base_dir` and `pg_factory` reach every integration test through
conftest.py; import the helpers (`ServerFactory`) by bare module name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from free_ports import free_port

from spofless.pg import PostgresServer, ServerSettings
from spofless.pg._binaries import find_binaries
from spofless.pg._errors import PgSetupError


def _require_postgres() -> None:
    try:
        find_binaries()
    except PgSetupError as exc:
        pytest.skip(f"PostgreSQL not installed: {exc}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` OS user to run PostgreSQL as")


@pytest.fixture
def pg_base_dir() -> Iterator[Path]:
    """A private directory the PostgreSQL OS user can reach (pytest's tmp_path is 0700 root)."""
    _require_postgres()
    base = Path(tempfile.mkdtemp(prefix="spofless-pg-"))
    try:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


ServerFactory = Callable[[str], PostgresServer]


@pytest_asyncio.fixture
async def pg_factory(pg_base_dir: Path) -> AsyncIterator[ServerFactory]:
    """Make PostgresServers on free ports under pg_base_dir; every one is stopped at the end."""
    made: list[PostgresServer] = []

    def make(name: str) -> PostgresServer:
        server = PostgresServer(
            ServerSettings(
                name=name, data_dir=pg_base_dir / name, port=free_port(), start_timeout=30
            )
        )
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            pid = server.pid
            with contextlib.suppress(Exception):
                await server.stop("immediate")
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
