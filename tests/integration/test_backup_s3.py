"""The S3 repository against a real S3-compatible server on 127.0.0.1.

The server is moto's (`moto_server`, from moto[server]) in server mode: a
separate process speaking the S3 HTTP API, reached by boto3 over a socket,
not patched in-process. No other S3 server is installable here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from backup_pg import s3_server
from free_ports import free_port

from spofless.backup import (
    ArchiveConflictError,
    Codec,
    CorruptObjectError,
    ObjectNotFoundError,
    RepositoryError,
    Store,
    WrongKeyError,
    archive_wal,
    restore_wal,
)
from spofless.backup._s3 import S3Repository

pytestmark = pytest.mark.integration

KEY = os.urandom(32)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    name = f"b{time.monotonic_ns()}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_s3_repository_contract(s3_endpoint: str, bucket: str) -> None:
    repo = S3Repository(bucket, prefix="shop/", endpoint=s3_endpoint)
    repo.put("db/wal/a", b"1")
    repo.put("db/wal/b", b"2")
    repo.put("db/backup/x/manifest", b"3")
    repo.put("db/wal/a", b"11")
    assert repo.get("db/wal/a") == b"11"
    assert repo.list("db/wal/") == ["db/wal/a", "db/wal/b"]
    assert repo.list("db/") == ["db/backup/x/manifest", "db/wal/a", "db/wal/b"]
    assert repo.exists("db/wal/b") and not repo.exists("db/wal/c")
    repo.delete("db/wal/b")
    assert repo.list("db/wal/") == ["db/wal/a"]
    with pytest.raises(ObjectNotFoundError):
        repo.get("db/wal/b")
    # The prefix is really there, in the bucket.
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["shop/db/backup/x/manifest", "shop/db/wal/a"]


def test_wal_archive_on_s3_is_encrypted_idempotent_and_detects_damage(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    repo = S3Repository(bucket, endpoint=s3_endpoint)
    store = Store(repo, Codec(3, KEY), "db")
    seg = tmp_path / "000000010000000000000002"
    seg.write_bytes(os.urandom(1000) + b"\0" * 100_000)
    archive_wal([store], seg, seg.name)
    archive_wal([store], seg, seg.name)
    stored = repo.get("db/wal/" + seg.name)
    assert len(stored) < 10_000 and seg.read_bytes()[:1000] not in stored
    other = tmp_path / "other"
    other.write_bytes(b"x" * 10)
    with pytest.raises(ArchiveConflictError):
        archive_wal([store], other, seg.name)
    out = tmp_path / "out"
    restore_wal([store], seg.name, out)
    assert out.read_bytes() == seg.read_bytes()
    with pytest.raises(WrongKeyError):
        Store(repo, Codec(3, os.urandom(32)), "db").read("db/wal/" + seg.name)
    damaged = bytearray(stored)
    damaged[200] ^= 1
    repo.put("db/wal/" + seg.name, bytes(damaged))
    with pytest.raises(CorruptObjectError, match=f"db/wal/{seg.name}: damaged"):
        restore_wal([store], seg.name, out)


def test_unreachable_s3_fails_within_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    port = free_port()  # nothing listens there
    repo = S3Repository("nobucket", endpoint=f"http://127.0.0.1:{port}", timeout=1)
    started = time.monotonic()
    with pytest.raises(RepositoryError, match="cannot write"):
        repo.put("db/wal/x", b"1")
    assert time.monotonic() - started < 30
