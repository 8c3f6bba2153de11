"""Restore as a new cluster: every member of a postgres component from one backup.

`restore_as_cluster` restores the backup for the target into the data
directory of member 0 (the stack's layout, `<state dir>/data/<component>-<i>`),
starts it once on a private socket with archiving off, lets it replay to the
target and promote, and stops it cleanly. Then:

- the recovery settings the restore wrote are taken out of
  `postgresql.auto.conf`, so the agent's own settings apply;
- the new timeline's history file is archived into every repository (the
  promotion ran with archiving off; without it, the new timeline's WAL could
  not be restored through);
- the stopped directory is copied to every other member: a cleanly stopped
  primary is a valid replica's base, so `spofless up` finds data in every
  member, none of them bootstraps an empty cluster (the race a member without
  data would run), and the election makes one of the copies the primary, the
  others replicas of it.

Members on several machines (`here`: the members placed on this machine, as `up
--host H` runs them): the same command runs on every machine. The machine of
member 0 restores it as above, and copies it to its other members; every other
machine restores nothing: it marks its members clone-only (`<data dir>.clone-only`),
so their agents never bootstrap an empty cluster, whichever machine's `up --host`
starts first; they wait for the restored primary and clone it, the normal way a
replica without data joins (pg_basebackup from the leader). The mark stays after
the clone; it only matters while a member has no data in a cluster not bootstrapped.

Refused, with nothing written: a member's data directory that already exists
(stop the stack and move it away first), a target no backup serves.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spofless.backup._config import BackupConfig
from spofless.backup._errors import BackupError
from spofless.backup._restore import RECOVERY_MARK, chown_tree, restore
from spofless.backup._scratch import ScratchInstance
from spofless.backup._store import Store, archive_wal
from spofless.backup.plan import Target, choose_backup
from spofless.pg import clone_only_mark

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterRestore:
    label: str | None  # the backup restored; None: this machine's members were marked only
    timeline: int | None  # the new cluster's timeline
    members: tuple[Path, ...]  # the data directories written, member 0 first
    marked: tuple[Path, ...] = ()  # the data directories marked clone-only


def member_dirs(state_dir: Path, component: str, count: int) -> list[Path]:
    """The data directories of the component's members (spofless.pg.agent_settings' layout)."""
    return [state_dir.resolve() / "data" / f"{component}-{i}" for i in range(count)]


def _strip_recovery(auto: Path) -> None:
    text = auto.read_text()
    cut = text.find(RECOVERY_MARK)
    if cut >= 0:
        auto.write_text(text[:cut].rstrip("\n") + "\n")


def _timeline(data: Path) -> int:
    histories = sorted((data / "pg_wal").glob("*.history"))
    return int(histories[-1].name.split(".")[0], 16) if histories else 1


def restore_as_cluster(
    config: BackupConfig,
    store: Store,
    target: Target,
    state_dir: Path,
    *,
    here: Sequence[int] | None = None,
    tablespace_map: Mapping[str, Path] | None = None,
    timeout: float = 600.0,
) -> ClusterRestore:
    """Restore `target` into the members under `state_dir`: every member, or those of
    `here` (the indexes placed on this machine; see the module docstring)."""
    every = member_dirs(state_dir, config.component, len(config.sources))
    mine = sorted(set(range(len(every)) if here is None else here))
    dirs = [every[i] for i in mine]
    taken = [d for d in dirs if d.exists()]
    if taken:
        raise BackupError(
            f"{', '.join(map(str, taken))} exists: a new cluster is restored into empty "
            "members only (stop the stack, then move the old data directories away)"
        )
    if not dirs:
        return ClusterRestore(None, None, ())
    if mine[0] != 0:
        # Member 0 is restored on its own machine: these clone it once it runs. The
        # target is checked here too, so a wrong one fails on every machine.
        manifests = store.manifests()
        choose_backup([m.info() for m in manifests], target, store.histories())
        marks = [clone_only_mark(d) for d in dirs]
        for mark in marks:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text(
                f"{mark.name.removesuffix('.clone-only')} joins the cluster restored into "
                f"{every[0].name} on its machine: it clones it, never bootstraps\n"
            )
        return ClusterRestore(None, None, (), tuple(marks))
    if len(dirs) > 1:
        chosen = choose_backup([m.info() for m in store.manifests()], target, store.histories())
        if store.manifest(chosen.label).tablespaces:
            raise BackupError(
                f"backup {chosen.label} has tablespaces: members on one machine cannot share "
                "their directories; restore one member per machine (--host), or with --to "
                "and --tablespace-map"
            )
    owner = pwd.getpwnam(config.os_user or "postgres") if os.geteuid() == 0 else None
    first = dirs[0]
    first.parent.mkdir(parents=True, exist_ok=True)
    manifests = store.manifests()
    version = manifests[-1].pg_version if manifests else "150000"
    try:
        with ScratchInstance(version, config.os_user, timeout, data=first) as pg:
            m = restore(
                store,
                target,
                first,
                parallel=config.spec.parallel,
                owner=owner,
                archive=False,
                tablespace_map=tablespace_map,
            )
            pg.start()
            pg.wait_promoted()
            pg.stop("fast")
        _strip_recovery(first / "postgresql.auto.conf")
        # The promotion's history file, which archiving (off) did not take.
        tli = _timeline(first)
        if tli > 1:
            name = f"{tli:08X}.history"
            for line in archive_wal(config.stores, first / "pg_wal" / name, name):
                logger.info("%s", line)
        for other in dirs[1:]:
            shutil.copytree(first, other, symlinks=True)
            if owner is not None:
                chown_tree(other, owner)
    except BaseException:
        # Half a cluster must not start: remove what this call wrote.
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        raise
    return ClusterRestore(m.label, tli, tuple(dirs))
