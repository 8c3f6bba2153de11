"""The data directory: what it holds, and the configuration files spofless manages.

spofless owns three files in a data directory and rewrites them before every
start (pg_basebackup and pg_rewind copy the source's): `spofless.conf`
(included from postgresql.conf), `pg_hba.conf` and `standby.signal`.
Nothing here ever deletes a data directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from spofless._linux import pid_from_file
from spofless.pg._errors import PgSetupError
from spofless.pg.rejoin import parse_history
from spofless.pg.view import DiskPosition, TimelineHistory, optional_lsn

MANAGED_CONF = "spofless.conf"
INCLUDE_LINE = f"include_if_exists = '{MANAGED_CONF}'  # managed by spofless\n"
# States pg_controldata reports for a data directory that was last a writable primary.
PRIMARY_STATES = frozenset({"shut down", "in production", "in crash recovery", "shutting down"})
# States pg_rewind accepts: cleanly shut down, as a primary or as a standby.
CLEAN_STATES = frozenset({"shut down", "shut down in recovery"})
# States of a data directory last running as a standby.
RECOVERY_STATES = frozenset({"shut down in recovery", "in archive recovery"})


@dataclass(frozen=True, slots=True)
class ControlData:
    """The few pg_controldata fields the agent reads."""

    state: str  # "Database cluster state"
    timeline: int | None  # "Latest checkpoint's TimeLineID"
    checkpoint_lsn: int | None  # "Latest checkpoint location"
    min_recovery_lsn: int | None  # "Minimum recovery ending location" (0 when none)
    system_identifier: str | None
    min_recovery_timeline: int | None = None  # "Min recovery ending loc's timeline"
    segment_size: int = 16 * 1024 * 1024  # "Bytes per WAL segment"


def parse_controldata(text: str) -> ControlData:
    """pg_controldata's output as ControlData (unknown fields become None)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    tli = fields.get("Latest checkpoint's TimeLineID")
    min_tli = fields.get("Min recovery ending loc's timeline")
    seg = fields.get("Bytes per WAL segment", "")
    return ControlData(
        state=fields.get("Database cluster state", "unknown"),
        timeline=int(tli) if tli and tli.isdigit() else None,
        checkpoint_lsn=optional_lsn(fields.get("Latest checkpoint location")),
        min_recovery_lsn=optional_lsn(fields.get("Minimum recovery ending location")),
        system_identifier=fields.get("Database system identifier"),
        min_recovery_timeline=int(min_tli) if min_tli and min_tli.isdigit() else None,
        segment_size=int(seg) if seg.isdigit() else 16 * 1024 * 1024,
    )


def disk_position(cd: ControlData, backup_label: bool) -> DiskPosition:
    """How far a stopped data directory's WAL goes (the rules are in spofless.pg.rejoin).

    `backup_label`: the directory is a base backup not yet started (a fresh clone).
    """
    if cd.state == "shut down":
        return DiskPosition(cd.state, cd.timeline, cd.checkpoint_lsn, shutdown_checkpoint=True)
    if cd.state in RECOVERY_STATES or backup_label:
        if cd.min_recovery_lsn and cd.min_recovery_timeline:
            return DiskPosition(cd.state, cd.min_recovery_timeline, cd.min_recovery_lsn)
        return DiskPosition(cd.state, cd.timeline, cd.checkpoint_lsn)
    return DiskPosition(cd.state, cd.timeline, None)


def data_version(data_dir: Path, major: int) -> int | None:
    """The data directory's major version; None when it is absent or empty.

    Raises PgSetupError when it holds something that is not a PostgreSQL cluster,
    or a cluster of another major version than the binaries'.
    """
    if not data_dir.exists():
        return None
    if not data_dir.is_dir():
        raise PgSetupError(f"data directory {data_dir} is not a directory")
    if not any(data_dir.iterdir()):
        return None
    version_file = data_dir / "PG_VERSION"
    if not version_file.is_file():
        raise PgSetupError(
            f"{data_dir} is not empty and is not a PostgreSQL data directory (no PG_VERSION); "
            "spofless never removes a directory it did not create: empty it or choose another"
        )
    text = version_file.read_text().strip()
    if not re.fullmatch(r"\d+", text):
        raise PgSetupError(f"{version_file} holds {text!r}, not a PostgreSQL major version")
    if int(text) != major:
        raise PgSetupError(
            f"{data_dir} is a PostgreSQL {text} data directory but the binaries are "
            f"PostgreSQL {major}: upgrade it with pg_upgrade or choose another directory"
        )
    return int(text)


def conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def write_managed_files(
    data_dir: Path,
    settings: Mapping[str, str | int | bool],
    standby: bool,
    *,
    hba: str,
    ident: str | None = None,
    extra: Mapping[str, bytes] | None = None,
) -> None:
    """Rewrite spofless.conf, pg_hba.conf (pg_ident.conf, and `extra` files such as the
    TLS certificate and key) and standby.signal; include spofless.conf once.

    Every file keeps the data directory's owner, so PostgreSQL and its tools (run as
    that user) can rewrite them.
    """
    st = data_dir.stat()
    owner = (st.st_uid, st.st_gid)
    conf = data_dir / "postgresql.conf"
    text = conf.read_text() if conf.exists() else ""
    if INCLUDE_LINE not in text:
        with conf.open("a") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + INCLUDE_LINE)
    lines = ["# Managed by spofless: rewritten before every start and on changes.\n"]
    lines += [f"{k} = {conf_value(v)}\n" for k, v in settings.items()]
    _replace(data_dir / MANAGED_CONF, "".join(lines), owner)
    _replace(data_dir / "pg_hba.conf", hba, owner)
    if ident is not None:
        _replace(data_dir / "pg_ident.conf", ident, owner)
    for name, data in (extra or {}).items():
        write_private(data_dir / name, data, owner)
    signal = data_dir / "standby.signal"
    if standby:
        signal.touch()
        os.chown(signal, *owner)
    else:
        signal.unlink(missing_ok=True)


def _replace(path: Path, text: str, owner: tuple[int, int]) -> None:
    write_private(path, text.encode(), owner)


def write_private(path: Path, data: bytes, owner: tuple[int, int]) -> None:
    """Write atomically (a reload never reads half a file), owned by `owner`, mode 0600."""
    tmp = path.with_name(path.name + ".spofless-tmp")
    # Created 0600: a password or a key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.chmod(0o600)  # an existing file kept its mode
    os.chown(tmp, *owner)
    tmp.replace(path)


def timelines_at(
    data_dir: Path, positions: Sequence[int | None], segment_size: int
) -> tuple[int | None, ...]:
    """For each position, the timeline a standby has it on: the newest timeline whose
    WAL segment file holding it is in pg_wal (None when there is none). One listing.

    What PostgreSQL reports lags (the last restartpoint's timeline) or comes and goes
    (the receiver's, only while connected). A standby that never switched to the
    leader's timeline has no segment file of that timeline: it replays its own, even
    when it already fetched the leader's history file."""
    try:
        names = [p.name for p in (data_dir / "pg_wal").iterdir()] if segment_size > 0 else []
    except OSError:
        names = []
    per_id = 0x100000000 // segment_size if segment_size > 0 else 1
    out: list[int | None] = []
    for position in positions:
        if position is None or not names:
            out.append(None)
            continue
        segno = position // segment_size
        suffix = f"{segno // per_id:08X}{segno % per_id:08X}"
        timelines = [int(n[:8], 16) for n in names if len(n) == 24 and n.endswith(suffix)]
        out.append(max(timelines, default=None))
    return tuple(out)


def read_history(data_dir: Path, timeline: int) -> TimelineHistory:
    """A primary's timeline history, from its `pg_wal/<TL>.history` (none on timeline 1).

    Raises OSError or ValueError when the file is missing or malformed."""
    if timeline <= 1:
        return TimelineHistory(timeline)
    path = data_dir / "pg_wal" / f"{timeline:08X}.history"
    return TimelineHistory(timeline, parse_history(path.read_text()))


CLONE_ONLY = ".clone-only"  # beside a member's data directory: it never bootstraps


def clone_only_mark(data_dir: Path) -> Path:
    """The mark `spofless restore --as-cluster --host` leaves beside the data directory
    of a member that must clone the restored cluster, never initdb one of its own."""
    return data_dir.with_name(data_dir.name + CLONE_ONLY)


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster running on `data_dir`, or None when none runs."""
    return pid_from_file(data_dir / "postmaster.pid", ("postgres", "postmaster"))


def leftovers(data_dir: Path) -> list[psutil.Process]:
    """Processes a killed postmaster left running on `data_dir`: its children (each in a
    session of its own, so they outlive it) and what they run (an archiver waiting on its
    `archive_command`). They keep the old shared memory attached, and a new postmaster
    refuses to start until they are gone. Call only when no postmaster runs on it: a
    process of the data directory's owner whose working directory is the data directory."""
    try:
        owner = data_dir.stat().st_uid
        target = str(data_dir.resolve())
    except OSError:
        return []
    out = []
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info["uids"]
            if uids is None or uids.real != owner or proc.pid == os.getpid():
                continue
            if proc.cwd() == target:
                out.append(proc)
        except (psutil.Error, OSError):
            continue
    return out
