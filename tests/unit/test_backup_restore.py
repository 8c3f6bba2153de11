"""Restore, verify and expire over an in-memory repository holding a hand-made backup."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from spofless.backup import (
    BackupError,
    Codec,
    FileEntry,
    Manifest,
    MemoryRepository,
    Store,
    Target,
    TargetError,
    expire,
    recovery_settings,
    restore,
    verify_backup,
)
from spofless.backup._manifest import Part
from spofless.backup.plan import WAL_SEGMENT_SIZE, Segment
from spofless.topology._backup import BackupRetention

KEY = bytes(32)
SEG = WAL_SEGMENT_SIZE


def _put_backup(
    store: Store, label: str, files: dict[str, list[bytes]], start: int, stop_time: float
) -> Manifest:
    entries = []
    for path, parts in files.items():
        for i, part in enumerate(parts):
            store.write(store.part_key(label, path, i), part)
        entries.append(
            FileEntry(
                path=path,
                size=sum(len(p) for p in parts),
                mode=0o600,
                mtime=1.0,
                parts=[
                    Part(size=len(p), sha256=hashlib.sha256(p).hexdigest(), ref=label)
                    for p in parts
                ],
            )
        )
    m = Manifest(
        label=label,
        kind="full",
        parent=None,
        component="db",
        source="db/0",
        pg_version="150004",
        system_identifier="1",
        timeline=1,
        start_lsn=start * SEG + 40,
        stop_lsn=start * SEG + 400,
        start_time=stop_time - 1,
        stop_time=stop_time,
        wal_segment_size=SEG,
        backup_label=f"START WAL LOCATION: 0/{start * SEG + 40:X}\nSTART TIMELINE: 1\n",
        directories=[("base", 0o700), ("base/1", 0o700), ("pg_wal", 0o700)],
        files=entries,
    )
    store.write_manifest(m)
    return m


@pytest.fixture(params=[KEY, None], ids=["encrypted", "plain"])
def store(request: pytest.FixtureRequest) -> Store:
    # Encrypted objects are hashed on restore; plain ones are checked by their frame.
    s = Store(MemoryRepository(), Codec(3, request.param), "db")
    _put_backup(s, "A", {"PG_VERSION": [b"15\n"], "base/1/1259": [b"x" * 100, b"y" * 50]}, 2, 100.0)
    _put_backup(s, "B", {"PG_VERSION": [b"15\n"], "base/1/1259": [b"z" * 10]}, 5, 200.0)
    for n in range(2, 8):
        s.write(s.wal_key(Segment(1, n).name()), f"wal{n}".encode())
    return s


def test_restore_picks_the_backup_writes_files_settings_and_prefetches_wal(
    store: Store, tmp_path: Path
) -> None:
    to = tmp_path / "data"
    m = restore(store, Target("time", time=150.0), to, restore_command="fetch %f %p")
    assert m.label == "A"
    assert (to / "base/1/1259").read_bytes() == b"x" * 100 + b"y" * 50
    assert (to / "base/1/1259").stat().st_mode & 0o777 == 0o600
    assert (to / "backup_label").read_text().startswith("START WAL LOCATION")
    assert (to / "recovery.signal").exists()
    auto = (to / "postgresql.auto.conf").read_text()
    assert "restore_command = 'fetch %f %p'" in auto
    assert "recovery_target_time = '1970-01-01 00:02:30+00:00'" in auto
    assert "recovery_target_action = 'promote'" in auto
    spool = sorted(p.name for p in (to / "pg_wal/spofless-spool").iterdir())
    assert spool == [Segment(1, n).name() for n in range(2, 8)]


def test_restore_refuses_a_non_empty_directory_and_an_early_target(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(BackupError, match="not empty"):
        restore(store, Target("latest"), tmp_path / "full", restore_command="x")
    assert os.listdir(tmp_path / "full") == ["x"]
    with pytest.raises(TargetError, match="before the end of the oldest backup"):
        restore(store, Target("time", time=50.0), tmp_path / "early", restore_command="x")
    assert not (tmp_path / "early").exists()


def test_restore_stops_at_a_damaged_part_naming_it(store: Store, tmp_path: Path) -> None:
    key = store.part_key("A", "base/1/1259", 1)
    blob = bytearray(store.repo.get(key))
    blob[-1] ^= 1
    store.repo.put(key, bytes(blob))
    with pytest.raises(BackupError, match="base/1/1259@1: damaged"):
        restore(store, Target("time", time=150.0), tmp_path / "d", restore_command="x")


def test_verify_names_damaged_and_missing_objects(store: Store) -> None:
    a, b = store.manifests()
    assert verify_backup(store, a).ok and verify_backup(store, b).ok
    store.repo.delete(store.wal_key(Segment(1, 5).name()))
    store.repo.put(store.part_key("A", "PG_VERSION", 0), store.codec.encode("other", b"15\n"))
    ra, rb = verify_backup(store, a), verify_backup(store, b)
    # An object moved from another key: encrypted, it fails authentication; plain, the
    # same content is the same object.
    moved = ["db/backup/A/files/PG_VERSION: damaged (authentication failed)"]
    assert ra.problems == (moved if store.codec.key else [])
    assert rb.problems == [
        f"db/wal/{Segment(1, 5).name()}: missing (WAL the backup needs to be consistent)"
    ]


def test_recovery_settings_for_each_target() -> None:
    assert recovery_settings(Target("latest"), "r '%f'", archive=True) == [
        "restore_command = 'r ''%f'''",
        "recovery_target_timeline = 'latest'",
    ]
    lines = recovery_settings(Target("lsn", lsn=0x3000028, timeline=2), "r", archive=False)
    assert "recovery_target_lsn = '0/3000028'" in lines
    assert "recovery_target_timeline = '2'" in lines
    assert "archive_mode = 'off'" in lines
    assert "recovery_target = 'immediate'" in recovery_settings(
        Target("immediate"), "r", archive=True
    )
    assert "recovery_target_name = 'before upgrade'" in recovery_settings(
        Target("name", name="before upgrade"), "r", archive=True
    )


def test_expire_applies_the_plan_and_keeps_what_the_kept_backup_needs(store: Store) -> None:
    plan = expire(store, BackupRetention(full=1), now=300.0, dry_run=True)
    assert plan.expire == ("A",) and store.labels() == ["A", "B"]
    store.write(store.wal_key(Segment(1, 3).name() + ".partial"), b"p")
    store.write(store.wal_key(Segment(1, 2).name() + ".00000028.backup"), b"b")
    store.write(store.wal_key(Segment(1, 6).name() + ".00000028.backup"), b"b")
    store.write(store.wal_key("00000002.history"), b"1\t0/3000000\tx\n")
    expire(store, BackupRetention(full=1), now=300.0)
    assert store.labels() == ["B"]
    assert not store.repo.list("db/backup/A/")
    assert store.wal_names() == [
        "000000010000000000000005",
        "000000010000000000000006",
        "000000010000000000000006.00000028.backup",
        "000000010000000000000007",
        "00000002.history",
    ]
    assert verify_backup(store, store.manifest("B")).ok


def test_archive_gap_names_the_missing_segment(store: Store) -> None:
    from spofless.backup import archive_gap

    b = store.manifest("B")
    assert archive_gap(store, b) is None
    store.repo.delete(store.wal_key(Segment(1, 6).name()))
    gap = archive_gap(store, b)
    assert gap is not None
    assert f"db/wal/{Segment(1, 6).name()} is missing" in gap and "1 segment(s)" in gap


def test_tablespaces_go_back_where_they_were_or_where_the_map_says(tmp_path: Path) -> None:
    from spofless.backup._errors import TargetError
    from spofless.backup._manifest import Manifest
    from spofless.backup._restore import tablespace_dirs

    was = tmp_path / "space"
    m = Manifest(
        label="L",
        kind="full",
        parent=None,
        component="db",
        source="db/0",
        pg_version="150000",
        system_identifier="1",
        timeline=1,
        start_lsn=0,
        stop_lsn=1,
        start_time=1.0,
        stop_time=2.0,
        wal_segment_size=16 << 20,
        backup_label="",
        directories=[],
        files=[],
        tablespaces={"16385": str(was), "16386": str(tmp_path / "other")},
    )
    assert tablespace_dirs(m, {}) == {
        "pg_tblspc/16385": was,
        "pg_tblspc/16386": tmp_path / "other",
    }
    moved = tmp_path / "moved"
    got = tablespace_dirs(m, {"16385": moved}, tmp_path / "scratch")
    assert got == {
        "pg_tblspc/16385": moved,
        "pg_tblspc/16386": tmp_path / "scratch" / "tablespace-16386",
    }
    with pytest.raises(TargetError, match=r"no tablespace 99 \(its tablespaces: 16385"):
        tablespace_dirs(m, {"99": moved})
    with pytest.raises(TargetError, match="share"):
        tablespace_dirs(m, {"16385": moved, "16386": moved})
    was.mkdir()
    assert tablespace_dirs(m, {})["pg_tblspc/16385"] == was  # empty: fine
    (was / "PG_15_202209061").mkdir()
    with pytest.raises(TargetError, match="--tablespace-map 16385=NEW_DIR"):
        tablespace_dirs(m, {})
    # A manifest from before tablespaces were backed up has none.
    old = Manifest.model_validate_json(m.model_dump_json(exclude={"tablespaces"}))
    assert old.tablespaces == {} and tablespace_dirs(old, {}) == {}
