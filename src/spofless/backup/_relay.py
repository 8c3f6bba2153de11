"""The WAL relay: archive_command and restore_command served by the agent's own process.

When the agent runs as root and PostgreSQL as another OS user (`postgres`),
that user often cannot run spofless at all: a virtualenv under /root, or an
interpreter under /root/.pyenv, is out of its reach; nor should it read the
encryption key or hold the repository's credentials. So, unless
`backup.command` says how that user runs spofless, PostgreSQL's commands are a
POSIX shell script that hands each request to the agent's process (root),
which archives or fetches the file with its own interpreter, key and
credentials, and answers:

    archive_command = '/bin/sh <data>.wal-relay/wal.sh archive %p %f'
    restore_command = '/bin/sh <data>.wal-relay/wal.sh restore %f %p'

Why this and not a copy of spofless somewhere PostgreSQL's user can run it: a
copy needs an interpreter that user can execute with every dependency
(pydantic, zstandard, cryptography, boto3) importable, which pyenv, uv and
virtualenvs under /root do not give; and the key file would have to be
readable by the database's user. The shell and `mv`, `head`, `sleep` are on
every machine PostgreSQL runs on. WAL-G's daemon mode makes the same choice.

The protocol, through the relay directory (owned by PostgreSQL's user, 0700):

    client:  <id>.tmp -> rename -> <id>.req     (op, name, path: one per line)
    relay:   <id>.req -> rename -> <id>.work    (claimed: never done twice)
    relay:   <id>.res (exit status, then the message) written atomically
    client:  prints the message to PostgreSQL's log, removes <id>.res, exits

Rules:
1. The relay archives `<data>/pg_wal/<name>` only, whatever path a request
   names, and only a file PostgreSQL's user owns, opened without following a
   symbolic link: that user cannot make root archive a file it could not read.
2. A restore writes only into `<data>/pg_wal` (pg_rewind's absolute %p
   included), as a new file owned by PostgreSQL's user.
3. Archive requests are answered with archive_wal's status (0 only when every
   repository holds the file); restore requests exit 1 when the file is not
   archived or cannot be fetched (a standby then streams instead).

Failure cases: the agent not running (or not yet): the client gives up after
its bound (5 min archive, 1 min restore) with a message naming the relay
directory, exit 1, and PostgreSQL retries the same file later. A client that
gave up leaves an answer nobody reads: the relay removes answers older than
10 minutes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import pwd
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spofless.backup._errors import BackupError, ObjectNotFoundError
from spofless.backup._store import Store, archive_wal, restore_wal

logger = logging.getLogger(__name__)

SCRIPT = "wal.sh"
# Polls of 20 ms: an archive_command answered within a poll of being done.
_POLL = 0.02
ARCHIVE_BOUND = 300
RESTORE_BOUND = 60
_STALE_ANSWER = 600.0

# What PostgreSQL archives: segments (also .partial), timeline histories, backup histories.
WAL_NAME = re.compile(r"^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")

_CLIENT = """#!/bin/sh
# The spofless WAL relay's client, written by spofless; PostgreSQL runs it:
#   sh wal.sh archive %p %f      sh wal.sh restore %f %p
# It hands the request to the spofless agent's process through this directory.
dir=${0%/*}
op=$1
if [ "$op" = archive ]; then path=$2; name=$3; bound=__ARCHIVE__
else name=$2; path=$3; bound=__RESTORE__; fi
# Relative to the data directory, PostgreSQL's working directory ($PWD may be stale).
case $path in /*) ;; *) path=$(pwd -P)/$path ;; esac
req=$dir/$op.$name.$$
printf '%s\\n%s\\n%s\\n' "$op" "$name" "$path" >"$req.tmp" && mv -f "$req.tmp" "$req.req" || exit 1
i=0
limit=$((bound * 50))
while [ ! -e "$req.res" ]; do
  i=$((i + 1))
  if [ "$i" -gt "$limit" ]; then
    rm -f "$req.req"
    echo "spofless: no answer from the WAL relay in $dir within $bound s" \\
      "(is the spofless pg agent running?)" >&2
    exit 1
  fi
  sleep 0.02
done
rc=$(head -n 1 "$req.res")
tail -n +2 "$req.res" >&2
rm -f "$req.res"
exit "${rc:-1}"
"""


def relay_dir(data_dir: Path) -> Path:
    """The relay directory of the instance whose data directory is `data_dir`."""
    return data_dir.with_name(data_dir.name + ".wal-relay")


def relay_commands(directory: Path) -> tuple[str, str]:
    """(archive_command, restore_command) that go through the relay in `directory`."""
    script = directory / SCRIPT
    if any(c in str(script) for c in " '\"\\$`"):
        raise BackupError(f"the WAL relay's directory {directory} must not hold spaces or quotes")
    return f"/bin/sh {script} archive %p %f", f"/bin/sh {script} restore %f %p"


@dataclass
class _Request:
    id: str
    op: str
    name: str
    path: str


class WalRelay:
    """Serve the relay directory of one data directory until `stop()`.

    `start()` creates the directory (owned by `owner`, 0700) and writes the
    client script, then answers requests from a thread, `parallel` at a time.
    """

    def __init__(
        self,
        stores: tuple[Store, ...],
        data_dir: Path,
        owner: pwd.struct_passwd | None,
        *,
        parallel: int = 2,
    ) -> None:
        self.stores = stores
        self.data_dir = data_dir
        self.dir = relay_dir(data_dir)
        self.owner = owner
        self.parallel = parallel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> WalRelay:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if self.owner is not None:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        script = self.dir / SCRIPT
        text = _CLIENT.replace("__ARCHIVE__", str(ARCHIVE_BOUND))
        text = text.replace("__RESTORE__", str(RESTORE_BOUND))
        tmp = self.dir / f".{SCRIPT}.new"
        tmp.write_text(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, script)
        self._thread = threading.Thread(target=self._serve, name="wal-relay", daemon=True)
        self._thread.start()
        logger.info("WAL relay serving %s", self.dir)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> WalRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving --------------------------------------------------------------------

    def _serve(self) -> None:
        last_sweep = 0.0
        with concurrent.futures.ThreadPoolExecutor(self.parallel) as pool:
            while not self._stop.is_set():
                try:
                    for req in self._claim():
                        pool.submit(self._answer, req)
                    if time.monotonic() - last_sweep > 60:
                        last_sweep = time.monotonic()
                        self._sweep()
                except OSError as exc:  # the directory removed under us: say so, keep trying
                    logger.error("WAL relay %s: %s", self.dir, exc)
                    self._stop.wait(1)
                self._stop.wait(_POLL)

    def _claim(self) -> list[_Request]:
        out: list[_Request] = []
        for entry in os.scandir(self.dir):
            if not entry.name.endswith(".req"):
                continue
            rid = entry.name[: -len(".req")]
            work = self.dir / f"{rid}.work"
            try:
                os.replace(entry.path, work)
                lines = work.read_text().split("\n")
            except OSError:
                continue  # the client gave up and removed it
            op, name, path = [*lines, "", "", ""][:3]
            out.append(_Request(rid, op, name, path))
        return out

    def _answer(self, req: _Request) -> None:
        try:
            if not WAL_NAME.match(req.name):
                status, message = 1, f"spofless relay: {req.name!r} is not a WAL file name"
            elif req.op == "archive":
                status, message = self._archive(req)
            elif req.op == "restore":
                status, message = self._restore(req)
            else:
                status, message = 1, f"spofless relay: unknown request {req.op!r}"
        except Exception as exc:  # one request's failure is its answer, never the relay's end
            logger.exception("WAL relay: %s %s", req.op, req.name)
            status, message = 1, f"spofless relay: {req.op} {req.name}: {exc}"
        if status != 0:
            logger.error("WAL relay: %s %s failed: %s", req.op, req.name, message)
        answer = self.dir / f"{req.id}.res"
        tmp = self.dir / f"{req.id}.restmp"
        tmp.write_text(f"{status}\n{message}\n")
        if self.owner is not None:
            os.chown(tmp, self.owner.pw_uid, self.owner.pw_gid)
        os.replace(tmp, answer)
        with contextlib.suppress(OSError):
            (self.dir / f"{req.id}.work").unlink()

    def _archive(self, req: _Request) -> tuple[int, str]:
        path = self.data_dir / "pg_wal" / req.name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            return 1, f"spofless relay: cannot open {path}: {exc.strerror}"
        try:
            st = os.fstat(fd)
            uid = self.owner.pw_uid if self.owner is not None else os.geteuid()
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
                return 1, f"spofless relay: {path} is not a regular file of PostgreSQL's user"
            # Read through /proc/self/fd: the file we checked, whatever the name points at now.
            lines = archive_wal(self.stores, Path(f"/proc/self/fd/{fd}"), req.name)
        except BackupError as exc:
            return 1, f"spofless relay: archiving {req.name}: {exc}"
        finally:
            os.close(fd)
        return 0, "\n".join(lines)

    def _restore(self, req: _Request) -> tuple[int, str]:
        dest = Path(req.path)
        pg_wal = (self.data_dir / "pg_wal").resolve()
        if not dest.is_absolute() or dest.parent.resolve() != pg_wal or "/" in dest.name:
            return 1, f"spofless relay: refusing to write {dest}: not in {pg_wal}"
        try:
            message = restore_wal(self.stores, req.name, pg_wal / dest.name)
        except ObjectNotFoundError as exc:
            return 1, str(exc)
        except BackupError as exc:
            return 1, f"spofless relay: restoring {req.name}: {exc}"
        if self.owner is not None:
            os.chown(
                pg_wal / dest.name, self.owner.pw_uid, self.owner.pw_gid, follow_symlinks=False
            )
        return 0, message

    def _sweep(self) -> None:
        """Remove answers (and temp files) nobody collected."""
        now = time.time()
        for entry in os.scandir(self.dir):
            if entry.name.endswith((".res", ".tmp", ".restmp")):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > _STALE_ANSWER:
                        os.unlink(entry.path)
