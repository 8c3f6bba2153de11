"""`spofless backup run`: take backups on the topology's schedule, then apply retention.

Observe (the manifests of the first repository) -> `schedule.due(...)` -> act
(take the backup, expire), one sentence logged per action. A failed backup is
logged and retried at the next check, `retry_after` later, not at once in a
loop. Runs until SIGTERM or SIGINT; a backup in progress then finishes first
(the low-level API session must end with pg_backup_stop).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from spofless.backup._basebackup import take_backup
from spofless.backup._config import BackupConfig
from spofless.backup._errors import BackupError
from spofless.backup._expire import expire
from spofless.backup.schedule import due

logger = logging.getLogger(__name__)


def run_schedule(
    config: BackupConfig, *, check_every: float = 30.0, retry_after: float = 300.0
) -> None:
    """Check every `check_every` s whether a backup is due; take it and expire."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if config.spec.schedule.full is None and config.spec.schedule.incremental is None:
        raise BackupError(f"{config.component}: backup.schedule has neither full nor incremental")
    failed_at = 0.0
    while not stop.is_set():
        now = time.time()
        try:
            kind = due(config.spec.schedule, [m.info() for m in config.stores[0].manifests()], now)
            if kind is not None and now - failed_at >= retry_after:
                m = take_backup(config, kind)
                logger.info("%s: took %s backup %s", config.component, m.kind, m.label)
                for store in config.stores:
                    plan = expire(store, config.spec.retention)
                    logger.info("%s: %s: %s", config.component, store.name, plan.describe())
        except BackupError as exc:
            failed_at = now
            logger.error(
                "%s: scheduled backup failed, retrying in %gs: %s",
                config.component,
                retry_after,
                exc,
            )
        stop.wait(check_every)
