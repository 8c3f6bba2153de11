"""PostgreSQL backups: continuous WAL archiving, base backups, point-in-time restore.

    backup_config(topology, component) -> BackupConfig   stores + sources from `backup:`
    archive_wal(stores, path, name)      archive_command: one WAL or history file
    restore_wal(stores, name, dest)      restore_command: fetch one file back
    take_backup(config, kind)            a full or incremental base backup -> Manifest
    verify_backup(store, manifest)       checksums and WAL; restore_check: a real restore
    restore(store, target, to, ...)      a data directory that replays to the target
    restore_as_cluster(config, ...)      every member of a new cluster, for `up` to start
    expire(store, retention)             retention, planned purely (spofless.backup.plan)
    schedule.staleness(...)              whether a scheduled backup was missed
    run_drill(config, store, ...)        restore drill: RTO per phase and RPO, measured
    record_drill / record_failed_drill   its figures (or its failure) as JSON in the state dir
    latest_drill / drill_summary         read back (spofless.pg.drill_records, which the
                                         agents serve); drill_metrics: Prometheus gauges
    run_schedule(config)                 `backup run`: backups and restore drills on the
                                         schedule, then expiry
    WalRelay(stores, data_dir, owner)    archive/restore commands served by the agent

PostgreSQL's own commands (what the pg agent sets; FILE is the absolute path of
the topology file, `<python>` the interpreter spofless runs under, so the same
installation is used whatever PATH PostgreSQL has):

    archive_mode = on
    archive_command = '<python> -m spofless backup archive-wal FILE --component db %p %f'
    restore_command = '<python> -m spofless backup restore-wal FILE --component db %f %p'

(restore_command on replicas only, to catch up from the archive.) `<python> -m
spofless` is `backup.command` when set. When the agent runs as root and
PostgreSQL as another OS user and `backup.command` is not set, both commands
are `/bin/sh <data>.wal-relay/wal.sh ...` instead: the agent's own process
(root) archives and fetches for PostgreSQL (the WAL relay, _relay.py), so that
user needs neither this interpreter nor the key nor the repository.
`postgres_settings(file, component, spec, standby=...)` returns exactly these
settings; `archive_command(...)` and `restore_command(...)` build the strings.
Without the relay they run as PostgreSQL's OS user, which must be able to
execute `<python>`, read FILE and the key file, and write an `fs` repository.
Each call starts a Python process (about 0.3 s), so the archiver keeps up with
about 40 MB/s of WAL per repository round trip.

The rules
---------
1. Every WAL file PostgreSQL completes, and every timeline history file and
   backup history file, goes to *every* repository; archive-wal exits 0 only
   when all of them hold it, so PostgreSQL keeps the file and retries otherwise
   (pg_wal grows; an archive failure is loud: PostgreSQL logs it and
   pg_stat_archiver counts it).
2. Archiving is idempotent: a name already archived with the same content is
   success. The same name with other content is refused (exit 2, nothing
   overwritten): two servers wrote different WAL under one name, which only a
   split brain does. So after a failover the new primary may re-archive what
   its predecessor archived, and a timeline switch never overwrites anything:
   the new timeline's files have new names, its history file too.
3. A base backup counts once its manifest is written, and the manifest is
   written last, after every file and after every WAL segment from the
   backup's start to its stop is archived. An interrupted backup is no backup.
4. Objects are compressed (zstd) then encrypted (AES-256-GCM, key from a key
   file, the object's key as associated data); files are stored in parts of
   64 MiB, each part's sha256 in the manifest. A wrong key is detected from
   the object header before decryption (WrongKeyError), so it is told apart
   from damage (CorruptObjectError, naming the object), and neither writes
   anything: a repository's first writer leaves a key-check object that every
   later archive-wal and backup decrypts before writing.
5. A restore picks the base backup for its target by itself (plan.py), refuses
   a target before the oldest backup's end, and writes into a new directory only.
6. Expiry never deletes what a kept backup needs (plan.py, property-tested).

Failure cases
-------------
- Repository unreachable or full during archive-wal: non-zero exit, PostgreSQL
  retries the same file; nothing half-written is visible (puts are atomic).
- Failover during archiving: the old primary's last segment may be archived by
  it, or not; the new primary archives its own timeline (new names) and the
  history file; a restore to `latest` follows the highest timeline through the
  history files (tests/unit/test_backup_plan.py, and for real with a kill -9 of
  the primary in tests/integration/test_backup_failover.py).
- A gap in the archive (a segment missing): `backup verify` names the missing
  segment and how many archived after it can no longer be restored to.
- restore-wal: a file not archived exits 1 (PostgreSQL's "end of archive").
  A damaged object, wrong key or unreachable repository: with --strict (for a
  restore_command of a recovery by hand) exit 126, so PostgreSQL aborts recovery instead of
  promoting with WAL missing; without (a standby's restore_command) exit 1
  with the error in PostgreSQL's log, so the standby streams instead of dying.
- Wrong or missing key file: a clear error, exit 2, nothing written.
- A corrupted object: `backup verify` names it and exits 1; a restore stops
  at it, naming it.

Restore drills run on `schedule.drill` in the scheduler `up` runs, or by hand
(`spofless backup drill`); every one, good or failed, is recorded in the state
directory (_drill_record), appended to the drill history by the CLI, and served
by the PostgreSQL agents at /status and /metrics.

Not yet: a `.partial` segment of the old timeline is archived under its
name but not used by restore.
"""

from spofless.backup._basebackup import Progress, take_backup
from spofless.backup._cluster import ClusterRestore, restore_as_cluster
from spofless.backup._codec import Codec, load_key
from spofless.backup._config import (
    BackupConfig,
    Source,
    archive_command,
    backup_config,
    postgres_settings,
    restore_command,
)
from spofless.backup._drill import DrillResult, run_drill
from spofless.backup._drill_record import (
    failed_record,
    history_document,
    record_drill,
    record_failed_drill,
    write_record,
)
from spofless.backup._errors import (
    ArchiveConflictError,
    BackupError,
    CorruptObjectError,
    KeyFileError,
    ObjectNotFoundError,
    RepositoryError,
    RestoreDrillError,
    SourceError,
    TargetError,
    WrongKeyError,
)
from spofless.backup._expire import expire
from spofless.backup._manifest import FileEntry, Manifest
from spofless.backup._relay import WalRelay, relay_commands, relay_dir
from spofless.backup._repo import FsRepository, MemoryRepository, Repository
from spofless.backup._restore import SPOOL, recovery_settings, restore
from spofless.backup._scheduler import run_schedule
from spofless.backup._store import Store, archive_wal, restore_wal
from spofless.backup._verify import VerifyResult, archive_gap, restore_check, verify_backup
from spofless.backup.plan import Target
from spofless.pg.drill_records import (
    DrillSummaryCache,
    drill_metrics,
    drill_summary,
    latest_drill,
)

__all__ = [
    "SPOOL",
    "ArchiveConflictError",
    "BackupConfig",
    "BackupError",
    "ClusterRestore",
    "Codec",
    "CorruptObjectError",
    "DrillResult",
    "DrillSummaryCache",
    "FileEntry",
    "FsRepository",
    "KeyFileError",
    "Manifest",
    "MemoryRepository",
    "ObjectNotFoundError",
    "Progress",
    "Repository",
    "RepositoryError",
    "RestoreDrillError",
    "Source",
    "SourceError",
    "Store",
    "Target",
    "TargetError",
    "VerifyResult",
    "WalRelay",
    "WrongKeyError",
    "archive_command",
    "archive_gap",
    "archive_wal",
    "backup_config",
    "drill_metrics",
    "drill_summary",
    "expire",
    "failed_record",
    "history_document",
    "latest_drill",
    "load_key",
    "postgres_settings",
    "record_drill",
    "record_failed_drill",
    "recovery_settings",
    "relay_commands",
    "relay_dir",
    "restore",
    "restore_as_cluster",
    "restore_check",
    "restore_command",
    "restore_wal",
    "run_drill",
    "run_schedule",
    "take_backup",
    "verify_backup",
    "write_record",
]
