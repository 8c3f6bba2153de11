"""The files that make rejoining crash-safe: saved WAL, kept-aside copies, their bounds."""

from __future__ import annotations

import os
from pathlib import Path

from spofless.pg._repair import (
    forget_rewind,
    keep_aside,
    old_copies,
    reclone_blocked,
    restore_wal,
    rewind_dir,
    save_wal,
)

SEG = 16 * 1024 * 1024


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "db-0"
    (data / "pg_wal").mkdir(parents=True)
    for name in ("000000010000000000000004", "000000010000000000000005"):
        (data / "pg_wal" / name).write_bytes(name.encode())
    # Recycled, preallocated for later: nothing in it yet.
    (data / "pg_wal" / "000000010000000000000009").write_bytes(b"recycled")
    (data / "pg_wal" / "00000002.history").write_text("1\t0/5000000\tx\n")
    return data


def test_saved_wal_is_put_back_over_what_a_rewind_left(tmp_path: Path) -> None:
    data = _data(tmp_path)
    save_wal(data, end=5 * SEG + 100, segment_size=SEG)
    saved = sorted(p.name for p in rewind_dir(data).iterdir())
    assert saved == [
        "00000001000000000000000400000000"[:24],
        "000000010000000000000005",
        "00000002.history",
    ]
    # pg_rewind overwrote one and removed another, then was killed.
    (data / "pg_wal" / "000000010000000000000005").write_bytes(b"the leader's")
    (data / "pg_wal" / "000000010000000000000004").unlink()
    owner = (os.getuid(), os.getgid())
    assert restore_wal(data, owner) == 3
    assert (
        data / "pg_wal" / "000000010000000000000005"
    ).read_bytes() == b"000000010000000000000005"
    assert (data / "pg_wal" / "000000010000000000000004").exists()
    forget_rewind(data)
    assert not rewind_dir(data).exists()


def test_old_copies_are_kept_never_deleted_and_bounded(tmp_path: Path) -> None:
    data = _data(tmp_path)
    first = keep_aside(data)
    assert first.exists() and not data.exists() and first.name.startswith("db-0.old-")
    data.mkdir()
    second = keep_aside(data)
    assert second != first and old_copies(data) == sorted([first, second])
    data.mkdir()
    why = reclone_blocked(data, keep=2)
    assert why is not None and "2 diverged data directories are kept already" in why
    assert first.exists() and second.exists()  # nothing deleted to make room
    assert reclone_blocked(data, keep=3) is None
