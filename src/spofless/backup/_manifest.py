"""One manifest per backup: what it is, and every file with its checksum.

Written last, after every file object: a backup exists exactly when its
manifest does, so an interrupted backup leaves only orphan objects (removed by
expiry), never a backup that looks complete. Like pgBackRest's manifest, an
incremental lists *every* file of the data directory, in parts; an unchanged
part names the earlier backup whose object holds it (`ref`), so a restore reads
one manifest and never walks a chain.

Tablespaces: their files are listed under `pg_tblspc/<oid>/...`, the path through
the data directory's link, and `tablespaces` maps each OID to the directory the
link pointed to, which a restore recreates (or the one `--tablespace-map` names).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from spofless.backup.plan import BackupInfo

FORMAT = 1


class Part(BaseModel):
    """One stretch of a file, stored as one object: files/<path> (part 0), files/<path>@i."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int
    sha256: str  # of the part as copied
    ref: str  # label of the backup whose object holds it


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the data directory, `/`-separated
    size: int
    mode: int
    mtime: float
    parts: list[Part]  # in order; at least one (an empty file has one empty part)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    label: str
    kind: Literal["full", "incremental"]
    parent: str | None
    component: str
    source: str  # the instance copied from
    pg_version: str
    system_identifier: str
    timeline: int
    start_lsn: int
    stop_lsn: int
    start_time: float
    stop_time: float
    wal_segment_size: int
    backup_label: str  # the labelfile pg_backup_stop returned, written as backup_label
    directories: list[tuple[str, int]]  # (path, mode), parents first
    files: list[FileEntry]
    # Tablespace OID -> the directory its pg_tblspc link pointed to (absolute).
    tablespaces: dict[str, str] = {}

    def info(self) -> BackupInfo:
        return BackupInfo(
            label=self.label,
            kind=self.kind,
            parent=self.parent,
            timeline=self.timeline,
            start_lsn=self.start_lsn,
            stop_lsn=self.stop_lsn,
            start_time=self.start_time,
            stop_time=self.stop_time,
        )

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def new_bytes(self) -> int:
        return sum(p.size for f in self.files for p in f.parts if p.ref == self.label)
