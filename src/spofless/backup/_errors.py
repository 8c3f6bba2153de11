"""The backup layer's exceptions.

    SpoflessError
    └── BackupError                  any backup, archive or restore failure
        ├── RepositoryError          a repository cannot be read or written (retry later)
        ├── KeyFileError             the key file is missing, unreadable or malformed
        ├── WrongKeyError            an object was encrypted with another key
        ├── CorruptObjectError       an object fails its checksum or cannot be decoded
        ├── ArchiveConflictError     a WAL file already archived with other content
        ├── TargetError              no backup can serve the restore target
        ├── RestoreDrillError        a restore drill failed (which phase, why)
        ├── SourceError              the PostgreSQL to copy from cannot be used
        └── ObjectNotFoundError      no object under that key (a WAL file not archived yet)

`RepositoryError` is the only one worth retrying unchanged; every other one
needs a person (or a different input).
"""

from __future__ import annotations

from spofless.errors import SpoflessError


class BackupError(SpoflessError):
    """A backup, archive or restore failed."""


class RepositoryError(BackupError):
    """A repository is unreachable or refused an operation."""


class KeyFileError(BackupError):
    """The encryption key file is missing or malformed."""


class WrongKeyError(BackupError):
    """An object was encrypted with a key other than the one given."""


class CorruptObjectError(BackupError):
    """An object does not match its checksum, or cannot be decrypted or decompressed."""


class ArchiveConflictError(BackupError):
    """A WAL file is already in the archive with different content."""


class TargetError(BackupError):
    """No backup in the repository can serve the restore target."""


class SourceError(BackupError):
    """The PostgreSQL server to back up cannot be reached or used."""


class ObjectNotFoundError(BackupError):
    """A repository holds no object under the key asked for."""


class RestoreDrillError(BackupError):
    """A restore drill failed in `phase` (restore, replay, first_query)."""

    def __init__(self, phase: str, reason: str, started_at: float) -> None:
        super().__init__(f"restore drill failed in {phase}: {reason}")
        self.phase = phase
        self.reason = reason
        self.started_at = started_at
