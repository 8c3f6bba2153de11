"""`spofless backup` and `spofless restore`: base backups, WAL archive, verify, restore.

Exit status: 0 success, 1 a finding (verify found a problem; restore-wal: the
file is not archived), 2 invalid input or a failed operation (message only).
restore-wal --strict (a recovery's restore_command) exits 126 on a damaged
object, a wrong key or an unreachable repository, which makes PostgreSQL abort
recovery instead of ending it early with WAL missing; without --strict (a
standby's restore_command) it exits 1, so the standby falls back to streaming.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any, Literal

import click

from spofless.cli._root import main, topology_of


class _DefaultTake(click.Group):
    """`spofless backup FILE ...` takes a backup; `spofless backup list FILE` etc. the rest."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["take", *args]
        return super().parse_args(ctx, args)


_component = click.option(
    "--component", default=None, help="The postgres component (default: the only one with backup:)."
)
_repo = click.option(
    "--repo",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Which repository to read (0-based, in the order of `repositories:`).",
)


def _config(file: str, component: str | None, *, connect: bool = False) -> Any:
    """The component's backup config; `connect` when the command connects to its
    instances (take, run)."""
    from spofless.backup import backup_config

    return backup_config(topology_of(file), component, connect=connect)


def _progress_printer() -> Any:
    last = [0.0]

    def show(p: Any) -> None:
        import time

        now = time.monotonic()
        if now - last[0] >= 1.0 or p.files_done == p.files_total:
            last[0] = now
            click.echo(p.line(), err=True)

    return show


@main.group(cls=_DefaultTake)
def backup() -> None:
    """Base backups and the WAL archive of a postgres component.

    \b
      spofless backup FILE [--full|--incremental]     take a base backup
      spofless backup list FILE                       the backups in a repository
      spofless backup verify FILE [--restore]         checksums, WAL, a real restore
      spofless backup expire FILE                     apply the retention
      spofless backup drill FILE                      restore drill: RTO per phase, RPO
      spofless backup run FILE                        backups and drills on the schedule
      spofless backup archive-wal FILE --component C %p %f     (archive_command)
      spofless backup restore-wal FILE --component C %f %p     (restore_command)
    """


@backup.command("take")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@click.option("--full", "kind", flag_value="full", help="Copy every file.")
@click.option(
    "--incremental",
    "kind",
    flag_value="incremental",
    default=True,
    help="Upload only files changed since the previous backup (the default; full if none).",
)
def backup_take(file: str, component: str | None, kind: Literal["full", "incremental"]) -> None:
    """Take a base backup from a running instance (a replica when `from: replica`)."""
    from spofless._logging import setup_logging
    from spofless.backup import take_backup

    cfg = _config(file, component, connect=True)
    setup_logging(f"{cfg.component} backup")
    m = take_backup(cfg, kind, progress=_progress_printer())
    click.echo(
        f"backup {m.label} ({m.kind}) of {m.source}: {len(m.files)} files, "
        f"{m.total_bytes / 1e6:.1f} MB, {m.new_bytes / 1e6:.1f} MB new"
    )


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


@backup.command("list")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@_repo
def backup_list(file: str, component: str | None, repo: int) -> None:
    """The backups in a repository, oldest first, and the archived WAL."""
    from spofless.backup.plan import format_lsn

    cfg = _config(file, component)
    store = _pick(cfg, repo)
    manifests = store.manifests()
    click.echo(f"repository {store.name}, component {cfg.component}")
    head = ("label", "kind", "ended (UTC)", "tli", "start", "stop", "size MB", "new MB")
    click.echo("{:<22} {:<12} {:<20} {:>3} {:>11} {:>11} {:>9} {:>8} parent".format(*head))
    for m in manifests:
        click.echo(
            f"{m.label:<22} {m.kind:<12} {_when(m.stop_time):<20} {m.timeline:>3} "
            f"{format_lsn(m.start_lsn):>11} {format_lsn(m.stop_lsn):>11} "
            f"{m.total_bytes / 1e6:>9.1f} {m.new_bytes / 1e6:>8.1f} {m.parent or '-'}"
        )
    wal = store.wal_names()
    click.echo(f"WAL: {len(wal)} files" + (f", {wal[0]} .. {wal[-1]}" if wal else ""))
    stale = _stale(cfg, manifests)
    if stale:
        click.echo(stale)


def _stale(cfg: Any, manifests: list[Any]) -> str | None:
    import time

    from spofless.backup import BackupError
    from spofless.backup.schedule import staleness

    try:
        return staleness(cfg.spec.schedule, [m.info() for m in manifests], time.time())
    except ValueError as exc:
        raise BackupError(f"backup.schedule: {exc}") from None


def _pick(cfg: Any, repo: int) -> Any:
    if repo >= len(cfg.stores):
        raise click.BadParameter(f"only {len(cfg.stores)} repositories", param_hint="--repo")
    return cfg.stores[repo]


@backup.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@_repo
@click.option("--label", default=None, help="Verify this backup only (default: every one).")
@click.option("--restore", "do_restore", is_flag=True, help="Also restore, start and query it.")
def backup_verify(
    file: str, component: str | None, repo: int, label: str | None, do_restore: bool
) -> None:
    """Check every file's checksum and the WAL each backup needs; exit 1 on a problem."""
    from spofless.backup import archive_gap, restore_check, verify_backup

    cfg = _config(file, component)
    store = _pick(cfg, repo)
    manifests = [store.manifest(label)] if label else store.manifests()
    if not manifests:
        click.echo(f"{store.name}: no backup to verify", err=True)
        sys.exit(1)
    bad = 0
    for m in manifests:
        r = verify_backup(store, m, cfg.spec.parallel)
        if r.ok and do_restore:
            try:
                r.restored = restore_check(
                    store,
                    m,
                    os_user=cfg.os_user,
                    parallel=cfg.spec.parallel,
                )
            except Exception as exc:  # a failed restore is a finding, reported, not a crash
                r.problems.append(f"restore failed: {exc}")
        status = "ok" if r.ok else "FAILED"
        extra = f", restore: {r.restored}" if r.restored else ""
        click.echo(f"{m.label}: {status} ({r.files} files, {r.segments} WAL segments{extra})")
        for p in r.problems:
            click.echo(f"  {p}")
        bad += not r.ok
    gap = None if label else archive_gap(store, manifests[-1])
    if gap:
        click.echo(gap)
    stale = None if label else _stale(cfg, manifests)
    if stale:
        click.echo(stale)
    sys.exit(1 if bad or gap or stale else 0)


@backup.command("drill")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@_repo
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the figures are recorded (default: .spofless/<file stem> beside FILE).",
)
def backup_drill(file: str, component: str | None, repo: int, state_dir: str | None) -> None:
    """Restore the latest point into a scratch instance; print RTO per phase and RPO.

    The scratch instance runs on a private socket, never archives, and is removed. The
    figures, or the failure, are recorded as JSON in STATE_DIR/drills/restore/ (`spofless
    check` reads the newest for the restore time; the agents serve it at /metrics) and in
    the drill history (`spofless drill history FILE`). Exit 1 when the drill failed.
    """
    import time

    from spofless.backup import (
        RestoreDrillError,
        backup_config,
        failed_record,
        run_drill,
        write_record,
    )
    from spofless.pg import default_state_dir

    topology = topology_of(file)
    cfg = backup_config(topology, component)
    store = _pick(cfg, repo)
    where = Path(state_dir) if state_dir else default_state_dir(Path(file))
    try:
        result = run_drill(cfg, store)
    except RestoreDrillError as exc:
        record = failed_record(cfg.component, store.name, exc, time.time())
        path = write_record(where, record)
        _to_history(where, record, topology.name)
        click.echo(f"RESTORE DRILL FAILED in {exc.phase}: {exc.reason}", err=True)
        click.echo(f"recorded in {path}", err=True)
        sys.exit(1)
    for line in result.lines():
        click.echo(line)
    record = result.to_json(cfg.component, store.name)
    click.echo(f"recorded in {write_record(where, record)}")
    _to_history(where, record, topology.name)


def _to_history(state_dir: Path, record: dict[str, Any], topology: str) -> None:
    """A restore drill's record as a row of `spofless drill history`."""
    from spofless.backup import history_document
    from spofless.drill import history

    history.append(state_dir, history_document(record, topology))


@backup.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@click.option(
    "--instance",
    "index",
    type=click.IntRange(0),
    default=None,
    help="Take backups only when they copy from this instance (the stack runs one beside each)"
    " and write status for `spofless status`.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the status goes (default: .spofless/<file stem> beside FILE).",
)
def backup_run(file: str, component: str | None, index: int | None, state_dir: str | None) -> None:
    """Take backups and restore drills on `backup.schedule`, apply the retention, until
    SIGTERM.

    Run it on the host of the instance backups copy from (`from: replica`: a replica's);
    `spofless up` runs one beside each instance of a component with a schedule. Drills
    are recorded in the state directory and the drill history, like `backup drill`'s.
    """
    from spofless._logging import setup_logging
    from spofless.backup import run_schedule
    from spofless.backup._scheduler import status_path
    from spofless.pg import default_state_dir

    cfg = _config(file, component, connect=True)
    setup_logging(f"{cfg.component}{'' if index is None else f'/{index}'} backup")
    if index is not None and index >= len(cfg.sources):
        raise click.BadParameter(
            f"{cfg.component} has instances 0..{len(cfg.sources) - 1}", param_hint="--instance"
        )
    where = Path(state_dir) if state_dir else default_state_dir(Path(file))
    status = status_path(where, cfg.component, index) if index is not None else None
    name = topology_of(file).name
    run_schedule(
        cfg,
        instance=index,
        status_file=status,
        state_dir=where,
        on_drill=lambda record: _to_history(where, record, name),
    )


@backup.command("expire")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_component
@click.option("--dry-run", is_flag=True, help="Only say what would expire.")
def backup_expire(file: str, component: str | None, dry_run: bool) -> None:
    """Remove the backups and WAL that the retention no longer keeps, in every repository."""
    from spofless.backup import expire

    cfg = _config(file, component)
    for store in cfg.stores:
        plan = expire(store, cfg.spec.retention, dry_run=dry_run)
        click.echo(f"{store.name}: {'would ' if dry_run else ''}{plan.describe()}")


@backup.command("archive-wal")
@click.argument("file", type=click.Path(dir_okay=False))
@_component
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("name")
def backup_archive_wal(file: str, component: str | None, path: str, name: str) -> None:
    """archive_command: archive WAL file PATH (%p) as NAME (%f) into every repository."""
    from spofless.backup import archive_wal

    for line in archive_wal(_config(file, component).stores, Path(path), name):
        click.echo(line, err=True)


@backup.command("restore-wal")
@click.argument("file", type=click.Path(dir_okay=False))
@_component
@click.option("--spool", type=click.Path(file_okay=False), default=None, help="Prefetched WAL.")
@click.option(
    "--strict", is_flag=True, help="Exit 126 (recovery stops) on any error but a missing file."
)
@click.argument("name")
@click.argument("path", type=click.Path(dir_okay=False))
def backup_restore_wal(
    file: str, component: str | None, spool: str | None, strict: bool, name: str, path: str
) -> None:
    """restore_command: write archived WAL file NAME (%f) to PATH (%p); exit 1 if not archived."""
    from spofless.backup import BackupError, ObjectNotFoundError, restore_wal

    try:
        cfg = _config(file, component)
        click.echo(
            restore_wal(cfg.stores, name, Path(path), Path(spool) if spool else None), err=True
        )
    except ObjectNotFoundError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(126 if strict else 1)
