"""Repositories: where backups and archived WAL live. One abstract contract, three stores.

    Repository          the contract (below)
    MemoryRepository    a dict, for tests and planning dry runs
    FsRepository        a directory
    S3Repository        an S3-compatible bucket (spofless.backup._s3)

Contract: keys are `/`-separated relative paths. `put` is atomic (a reader sees
the whole new object or the old one, never a part), overwrites, and is durable
when it returns; with `sync_dir=False` it is durable only once `sync_dirs()`
returned (a backup puts its parts so, then syncs once before its manifest). `get`
raises ObjectNotFoundError for a missing key. Every method raises
RepositoryError when the store is unreachable or refuses (permissions, a full
disk), after a bounded wait; the caller decides whether to retry.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from spofless.backup._errors import ObjectNotFoundError, RepositoryError


class Repository(ABC):
    """A flat key -> bytes store (see the module docstring for the contract)."""

    name: str

    @abstractmethod
    def put(self, key: str, data: bytes, *, sync_dir: bool = True) -> None: ...

    def sync_dirs(self) -> None:  # noqa: B027 (a no-op where every put is durable)
        """Make every earlier `put(..., sync_dir=False)` durable."""

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is no error."""


class MemoryRepository(Repository):
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, *, sync_dir: bool = True) -> None:
        with self._lock:
            self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self.objects[key]
            except KeyError:
                raise ObjectNotFoundError(f"{self.name}: no object {key}") from None

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self.objects

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)


class FsRepository(Repository):
    """Objects are files under `root`; a put writes a temporary file, fsyncs, renames, and
    fsyncs the directory (then, or in `sync_dirs`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.name = str(self.root)
        self._unsynced: set[Path] = set()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid repository key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes, *, sync_dir: bool = True) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            if sync_dir:
                _fsync_dir(path.parent)
            else:
                with self._lock:
                    self._unsynced.add(path.parent)
        except OSError as exc:
            raise RepositoryError(
                f"{self.name}: cannot write {key}: {exc.strerror or exc}"
            ) from None

    def sync_dirs(self) -> None:
        with self._lock:
            put_in, self._unsynced = self._unsynced, set()
        # A new directory's own entry is in its parent: sync every one up to the root.
        dirs = {x for d in put_in for x in (d, *d.parents) if x.is_relative_to(self.root)}
        for d in sorted(dirs, reverse=True):
            try:
                _fsync_dir(d)
            except OSError as exc:
                raise RepositoryError(
                    f"{self.name}: cannot sync {d}: {exc.strerror or exc}"
                ) from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{self.name}: no object {key}") from None
        except OSError as exc:
            raise RepositoryError(
                f"{self.name}: cannot read {key}: {exc.strerror or exc}"
            ) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            raise RepositoryError(f"{self.name}: repository directory does not exist")
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base.split("/")) if base else self.root
        out: list[str] = []
        try:
            for dirpath, _dirs, files in os.walk(start):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for f in files:
                    if f.startswith(".tmp-"):
                        continue
                    key = f if rel == "." else f"{rel}/{f}"
                    if key.startswith(prefix):
                        out.append(key)
        except OSError as exc:
            raise RepositoryError(f"{self.name}: cannot list: {exc.strerror or exc}") from None
        return sorted(out)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise RepositoryError(f"{self.name}: cannot delete {key}: {exc}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
