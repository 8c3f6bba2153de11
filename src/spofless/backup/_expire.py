"""Applying the retention to one repository: plan purely, then delete."""

from __future__ import annotations

import logging
import time

from spofless.backup._store import Store
from spofless.backup.plan import ExpiryPlan, parse_segment, plan_expiry
from spofless.topology._backup import BackupRetention

logger = logging.getLogger(__name__)


def expire(
    store: Store, retention: BackupRetention, *, now: float | None = None, dry_run: bool = False
) -> ExpiryPlan:
    """Delete what `retention` no longer keeps; backups first (manifest first), then WAL."""
    manifests = store.manifests()
    sizes = {m.label: m.wal_segment_size for m in manifests}
    seg_size = next(iter(sizes.values()), 16 * 1024 * 1024)
    plan = plan_expiry(
        [m.info() for m in manifests],
        store.segments(),
        full=retention.full,
        window=retention.window,
        now=time.time() if now is None else now,
        seg_size=seg_size,
    )
    if dry_run:
        return plan
    for label in plan.expire:
        logger.info("%s: expiring backup %s", store.name, label)
        store.delete_backup(label)
    for seg in plan.expire_wal:
        store.repo.delete(store.wal_key(seg.name(seg_size)))
    if plan.first_kept_segno is not None:
        for name in store.wal_names():
            of = parse_segment(name[:24], seg_size)
            if of is not None and len(name) > 24 and of.segno < plan.first_kept_segno:
                store.repo.delete(store.wal_key(name))  # .partial, .backup
    return plan
