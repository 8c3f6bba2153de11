"""The layout of one component's backups in a repository, and the WAL archive rules.

    <component>/key-check                        written first, with the repository's key
    <component>/wal/<file>                       WAL segments, history and .backup files
    <component>/backup/<label>/manifest          written last: the backup exists from then
    <component>/backup/<label>/files/<path>      one object per data-directory file

Every object goes through the Codec (zstd, AES-256-GCM). The same Codec and
layout in every repository, so one encoded object is put to all of them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spofless.backup._codec import Codec
from spofless.backup._errors import (
    ArchiveConflictError,
    BackupError,
    CorruptObjectError,
    ObjectNotFoundError,
    RepositoryError,
)
from spofless.backup._manifest import FileEntry, Manifest
from spofless.backup._repo import Repository
from spofless.backup.plan import Segment, Switch, parse_history, parse_history_name, parse_segment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Store:
    """One component's backups in one repository."""

    repo: Repository
    codec: Codec
    component: str

    @property
    def name(self) -> str:
        return self.repo.name

    def wal_key(self, name: str) -> str:
        return f"{self.component}/wal/{name}"

    def manifest_key(self, label: str) -> str:
        return f"{self.component}/backup/{label}/manifest"

    def file_key(self, label: str, path: str) -> str:
        return f"{self.component}/backup/{label}/files/{path}"

    def part_key(self, label: str, path: str, part: int) -> str:
        """Part 0 is the file's own key; PostgreSQL file names never hold `@`."""
        key = self.file_key(label, path)
        return key if part == 0 else f"{key}@{part}"

    # -- objects ------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        return self.codec.decode(key, self.repo.get(key))

    def write(self, key: str, data: bytes) -> None:
        self.repo.put(key, self.codec.encode(key, data))

    def read_part(self, entry: FileEntry, i: int) -> bytes:
        """Part `i` of a manifest entry, checked against its checksum."""
        part = entry.parts[i]
        key = self.part_key(part.ref, entry.path, i)
        data = self.codec.decode(key, self.repo.get(key), part.sha256)
        if len(data) != part.size:
            raise CorruptObjectError(f"{key}: damaged ({len(data)} bytes, not {part.size})")
        return data

    def read_part_into(
        self, entry: FileEntry, i: int, write: Callable[[memoryview], object]
    ) -> int:
        """Part `i` of a manifest entry decoded chunk by chunk into `write` (Codec.decode_into:
        a view of a reused buffer), checked against its checksum and size
        (CorruptObjectError after the writes)."""
        part = entry.parts[i]
        key = self.part_key(part.ref, entry.path, i)
        size = self.codec.decode_into(key, self.repo.get(key), part.sha256, write)
        if size != part.size:
            raise CorruptObjectError(f"{key}: damaged ({size} bytes, not {part.size})")
        return size

    def check_key(self) -> None:
        """Fail (WrongKeyError, KeyFileError) before writing with a key the repository's
        objects were not written with. The first writer leaves a small check object."""
        key = f"{self.component}/key-check"
        try:
            self.read(key)
        except ObjectNotFoundError:
            self.write(key, b"spofless")

    # -- WAL ----------------------------------------------------------------------

    def wal_names(self) -> list[str]:
        prefix = self.wal_key("")
        return [k[len(prefix) :] for k in self.repo.list(prefix)]

    def segments(self) -> set[Segment]:
        return {s for n in self.wal_names() if (s := parse_segment(n)) is not None}

    def histories(self) -> dict[int, tuple[Switch, ...]]:
        out: dict[int, tuple[Switch, ...]] = {}
        for n in self.wal_names():
            tli = parse_history_name(n)
            if tli is not None:
                out[tli] = parse_history(self.read(self.wal_key(n)).decode())
        return out

    # -- backups ------------------------------------------------------------------

    def labels(self) -> list[str]:
        prefix = f"{self.component}/backup/"
        return sorted(
            {
                k[len(prefix) :].split("/", 1)[0]
                for k in self.repo.list(prefix)
                if k.endswith("/manifest")
            }
        )

    def manifest(self, label: str) -> Manifest:
        return Manifest.model_validate_json(self.read(self.manifest_key(label)))

    def manifests(self) -> list[Manifest]:
        return sorted((self.manifest(label) for label in self.labels()), key=lambda m: m.stop_time)

    def write_manifest(self, manifest: Manifest) -> None:
        self.write(self.manifest_key(manifest.label), manifest.model_dump_json().encode())

    def delete_backup(self, label: str) -> None:
        """Manifest first: from then on the backup no longer exists, then its files."""
        self.repo.delete(self.manifest_key(label))
        for key in self.repo.list(f"{self.component}/backup/{label}/"):
            self.repo.delete(key)


# -- archive_command / restore_command -------------------------------------------


def archive_wal(stores: Sequence[Store], path: Path, name: str) -> list[str]:
    """Put WAL file `path` into every store as `name`; one line per store of what happened.

    Idempotent: a file already archived with the same content is success (the
    archiver retries after a crash, and a new primary may archive a file its
    predecessor did). The same name with other content raises
    ArchiveConflictError and changes nothing: two histories would have
    diverged under one name, and PostgreSQL must keep the file and retry.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read WAL file {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).digest()
    done: list[str] = []
    for store in stores:
        store.check_key()
        key = store.wal_key(name)
        if store.repo.exists(key):
            have = store.read(key)
            if hashlib.sha256(have).digest() != digest:
                raise ArchiveConflictError(
                    f"{store.name}: {name} is already archived with different content "
                    f"({len(have)} bytes there, {len(data)} here): refusing to overwrite; "
                    "two servers wrote the same WAL file name (split brain?)"
                )
            done.append(f"{store.name}: {name} already archived with this content")
            continue
        store.write(key, data)
        done.append(f"{store.name}: archived {name} ({len(data)} bytes)")
    return done


def restore_wal(stores: Sequence[Store], name: str, dest: Path, spool: Path | None = None) -> str:
    """Write archived WAL file `name` to `dest`, from the spool or the first store that has it.

    Raises ObjectNotFoundError when no store has it (PostgreSQL then tries
    pg_wal or ends recovery), the decoding errors when it is damaged, and
    RepositoryError when no store could be asked.
    """
    if spool is not None and (spool / name).is_file():
        os.replace(spool / name, dest)
        return f"restored {name} from the prefetch spool"
    unreachable: list[str] = []
    for store in stores:
        try:
            data = store.read(store.wal_key(name))
        except ObjectNotFoundError:
            continue
        except RepositoryError as exc:
            unreachable.append(str(exc))
            continue
        write_atomic(dest, data)
        return f"restored {name} from {store.name}"
    if unreachable:
        raise RepositoryError("; ".join(unreachable))
    raise ObjectNotFoundError(f"{name} is not in the archive")


def write_atomic(dest: Path, data: bytes, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".spofless-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
