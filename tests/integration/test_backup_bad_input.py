"""Bad input for backups with real resources: a full disk (a 1 MiB tmpfs) and an
unreachable repository give a clear error, exit 2, and leave nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny_repo() -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (root only), always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    base = Path(tempfile.mkdtemp(prefix="spofless-fulldisk-"))
    repo = base / "repo"
    repo.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(repo)], capture_output=True
    )
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.decode().strip()}")
    try:
        yield repo
    finally:
        subprocess.run(["umount", str(repo)], check=True)
        for p in sorted(base.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        base.rmdir()


def _spofless(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spofless", *args], capture_output=True, text=True, timeout=60
    )


def _topology(base: Path, repo: Path) -> Path:
    f = base / "t.yaml"
    f.write_text(
        "name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n    port: 1\n"
        f"    backup:\n      repositories: [{{type: fs, path: {repo}}}]\n"
        "      compression: none\nentry: [db]\n"
    )
    return f


def test_full_disk_fails_archive_wal_clearly_and_leaves_nothing(tiny_repo: Path) -> None:
    f = _topology(tiny_repo.parent, tiny_repo)
    small = tiny_repo.parent / "000000010000000000000001"
    small.write_bytes(os.urandom(100_000))
    out = _spofless("backup", "archive-wal", str(f), "--component", "db", str(small), small.name)
    assert out.returncode == 0, out.stderr
    big = tiny_repo.parent / "000000010000000000000002"
    big.write_bytes(os.urandom(2_000_000))  # incompressible, over the 1 MiB disk
    out = _spofless("backup", "archive-wal", str(f), "--component", "db", str(big), big.name)
    assert out.returncode == 2
    assert "cannot write db/wal/000000010000000000000002: No space left on device" in out.stderr
    names = sorted(p.name for p in tiny_repo.rglob("*") if p.is_file())
    assert names == ["000000010000000000000001", "key-check"]  # no partial object


def test_unreachable_fs_repository(tmp_path: Path) -> None:
    f = _topology(tmp_path, tmp_path / "not-mounted")
    out = _spofless("backup", "list", str(f))
    assert out.returncode == 2
    assert "repository directory does not exist" in out.stderr
