"""The `backup:` section of a `kind: postgres` component (spofless.backup).

    backup:
      repositories:                      # one or more; each gets every backup and segment
        - {type: fs, path: /var/backups/spofless}
        - {type: s3, bucket: shop-backups, endpoint: https://..., region: eu-west-1, prefix: db/}
      schedule: {full: "0 2 * * 0", incremental: "0 2 * * 1-6", drill: "0 4 * * *"}
                                         # cron: 5 fields, or 6 with seconds first
      retention: {full: 4, window: 14d}  # keep 4 full backups and all the window needs
      compression: zstd                  # or {type: zstd, level: 3}, or none
      encryption: {key_file: /etc/spofless/backup.key}             # AES-256-GCM
      from: replica                      # base backups from a replica when one is up

The key is never in the topology, only the path of a file that holds it
(32 random bytes, or 64 hex digits). Durations are `<n>s|m|h|d|w`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, field_validator

from spofless.topology._cron import check_cron
from spofless.topology._schema import Duration, Strict

# A cron line (spofless.topology._cron), parsed when the topology is loaded.
Cron = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(check_cron)]


class FsRepositorySpec(Strict):
    """A directory (local disk, or a mounted network file system); a relative path is
    relative to the topology file's directory."""

    type: Literal["fs"]
    path: str

    @field_validator("path")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("repository path must not be empty")
        return v


class S3RepositorySpec(Strict):
    """An S3-compatible bucket. Credentials come from the usual AWS sources
    (environment, ~/.aws), never from the topology."""

    type: Literal["s3"]
    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63)]
    endpoint: str | None = None  # None: AWS itself
    region: str = "us-east-1"
    prefix: str = ""  # every key of this repository starts with it
    # Every request gives up after this long (connect and read), so an
    # unreachable repository fails an archive_command instead of hanging it.
    timeout: Annotated[float, Field(gt=0, le=600)] = 10.0


RepositorySpec = Annotated[FsRepositorySpec | S3RepositorySpec, Field(discriminator="type")]


class BackupSchedule(Strict):
    full: Cron | None = None
    incremental: Cron | None = None
    # A restore drill (spofless.backup._drill): the latest point restored into a scratch
    # instance, RTO per phase and RPO measured, by the scheduler `up` runs.
    drill: Cron | None = None


class BackupRetention(Strict):
    # The newest `full` full backups are kept, with the incrementals built on them.
    full: Annotated[int, Field(ge=1, le=1000)] = 2
    # And whatever a restore to any moment in the last `window` needs. 0: none.
    window: Duration = 0.0


class Compression(Strict):
    type: Literal["zstd", "none"] = "zstd"
    # zstd's own default; 1 is faster, 19 smaller.
    level: Annotated[int, Field(ge=1, le=22)] = 3


def _compression(value: object) -> object:
    return {"type": value} if isinstance(value, str) else value


class Encryption(Strict):
    key_file: str


class BackupSpec(Strict):
    """Base backups and the WAL archive of one postgres component."""

    repositories: Annotated[list[RepositorySpec], Field(min_length=1)]
    schedule: BackupSchedule = Field(default_factory=BackupSchedule)
    retention: BackupRetention = Field(default_factory=BackupRetention)
    compression: Annotated[Compression, BeforeValidator(_compression)] = Field(
        default_factory=Compression
    )
    encryption: Encryption | None = None  # None: objects are stored unencrypted
    # Copy base backups from a replica, sparing the primary's disk; falls back
    # to the primary when no replica is up.
    from_: Literal["replica", "primary"] = Field("replica", alias="from")
    # Files copied at once by a base backup and a restore.
    parallel: Annotated[int, Field(ge=1, le=64)] = 2
    # How PostgreSQL's OS user runs spofless in archive_command and restore_command,
    # e.g. [/opt/spofless/bin/python, -m, spofless]. None: the interpreter that runs
    # the command writing them, which that user must then be able to execute.
    command: Annotated[list[str], Field(min_length=1)] | None = None
