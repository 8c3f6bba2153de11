"""Codec (zstd + AES-256-GCM), repositories and the WAL archive rules, without processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spofless.backup._codec import Codec, load_key
from spofless.backup._errors import (
    ArchiveConflictError,
    CorruptObjectError,
    KeyFileError,
    ObjectNotFoundError,
    RepositoryError,
    WrongKeyError,
)
from spofless.backup._repo import FsRepository, MemoryRepository, Repository
from spofless.backup._store import Store, archive_wal, restore_wal

KEY = bytes(range(32))


def test_codec_round_trips_and_compresses() -> None:
    data = b"spofless " * 10_000
    for codec in (Codec(3, KEY), Codec(3, None), Codec(None, KEY), Codec(None, None)):
        blob = codec.encode("a/b", data)
        assert codec.decode("a/b", blob) == data
        assert data not in blob or codec.key is None
    assert len(Codec(3, KEY).encode("a/b", data)) < len(data) // 10


def test_wrong_key_is_told_apart_from_damage() -> None:
    blob = Codec(3, KEY).encode("x", b"hello")
    with pytest.raises(WrongKeyError, match="another key"):
        Codec(3, os.urandom(32)).decode("x", blob)
    with pytest.raises(KeyFileError, match="encrypted"):
        Codec(3, None).decode("x", blob)
    damaged = bytearray(blob)
    damaged[-3] ^= 1
    with pytest.raises(CorruptObjectError, match=r"^x: damaged"):
        Codec(3, KEY).decode("x", bytes(damaged))
    # An object moved under another name fails too (the name is authenticated).
    with pytest.raises(CorruptObjectError):
        Codec(3, KEY).decode("y", blob)
    plain = bytearray(Codec(None, None).encode("p", b"hello world"))
    plain[-1] ^= 1
    with pytest.raises(CorruptObjectError, match="checksum"):
        Codec(None, None).decode("p", bytes(plain))
    with pytest.raises(CorruptObjectError, match="bad header"):
        Codec().decode("z", b"nope")


def test_key_file_forms(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.write_bytes(KEY)
    hexed = tmp_path / "hex"
    hexed.write_text(KEY.hex() + "\n")
    assert load_key(raw) == load_key(hexed) == KEY
    bad = tmp_path / "bad"
    bad.write_text("short")
    with pytest.raises(KeyFileError, match="32 random bytes"):
        load_key(bad)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key(tmp_path / "missing")


@pytest.fixture(params=["memory", "fs"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    return MemoryRepository() if request.param == "memory" else FsRepository(tmp_path / "repo")


def test_repository_contract(repo: Repository) -> None:
    repo.put("db/wal/a", b"1")
    repo.put("db/wal/b", b"2")
    repo.put("db/backup/x/manifest", b"3")
    repo.put("db/wal/a", b"11")
    assert repo.get("db/wal/a") == b"11"
    assert repo.list("db/wal/") == ["db/wal/a", "db/wal/b"]
    assert repo.list("db/") == ["db/backup/x/manifest", "db/wal/a", "db/wal/b"]
    assert repo.exists("db/wal/b") and not repo.exists("db/wal/c")
    repo.delete("db/wal/b")
    repo.delete("db/wal/b")
    assert repo.list("db/wal/") == ["db/wal/a"]
    with pytest.raises(ObjectNotFoundError):
        repo.get("db/wal/b")


def test_fs_repository_errors_are_repository_errors(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        FsRepository(tmp_path / "absent").list("db/")
    (tmp_path / "file").write_text("")
    with pytest.raises(RepositoryError, match="cannot write"):
        FsRepository(tmp_path / "file").put("db/x", b"")


def test_archive_wal_is_idempotent_and_refuses_other_content(tmp_path: Path) -> None:
    stores = [
        Store(MemoryRepository("m1"), Codec(3, KEY), "db"),
        Store(MemoryRepository("m2"), Codec(3, KEY), "db"),
    ]
    seg = tmp_path / "000000010000000000000001"
    seg.write_bytes(b"A" * 1000)
    assert [s.endswith("(1000 bytes)") for s in archive_wal(stores, seg, seg.name)] == [True, True]
    assert all("already archived" in s for s in archive_wal(stores, seg, seg.name))
    seg.write_bytes(b"B" * 1000)
    with pytest.raises(ArchiveConflictError, match="000000010000000000000001 is already archived"):
        archive_wal(stores, seg, seg.name)
    out = tmp_path / "RECOVERYXLOG"
    restore_wal(stores, seg.name, out)
    assert out.read_bytes() == b"A" * 1000
    with pytest.raises(ObjectNotFoundError):
        restore_wal(stores, "000000010000000000000002", out)
    # A history file is archived like a segment.
    hist = tmp_path / "00000002.history"
    hist.write_text("1\t0/3000000\tno recovery target specified\n")
    archive_wal(stores, hist, hist.name)
    assert stores[1].histories() == {2: stores[0].histories()[2]}
    assert stores[0].wal_names() == ["00000001000000000000000" + "1", "00000002.history"]
    # Another key never writes into a repository written with this one.
    wrong = Store(stores[0].repo, Codec(3, os.urandom(32)), "db")
    seg2 = tmp_path / "000000010000000000000002"
    seg2.write_bytes(b"C" * 10)
    before = dict(stores[0].repo.objects)  # type: ignore[attr-defined]
    with pytest.raises(WrongKeyError):
        archive_wal([wrong], seg2, seg2.name)
    assert stores[0].repo.objects == before  # type: ignore[attr-defined]


def test_restore_wal_falls_over_to_the_next_repository(tmp_path: Path) -> None:
    dead = Store(FsRepository(tmp_path / "file-not-dir"), Codec(3, KEY), "db")
    (tmp_path / "file-not-dir").write_text("")
    live = Store(MemoryRepository(), Codec(3, KEY), "db")
    live.write(live.wal_key("000000010000000000000001"), b"wal")
    out = tmp_path / "out"
    assert "from memory" in restore_wal([dead, live], "000000010000000000000001", out)
    assert out.read_bytes() == b"wal"


@pytest.mark.parametrize(
    "codec",
    [Codec(3, None), Codec(3, os.urandom(32)), Codec(None, None)],
    ids=["zstd", "zstd-encrypted", "plain"],  # not the random key: the same on every worker
)
def test_decode_into_writes_the_content_in_chunks_and_checks_it(codec: Codec) -> None:
    import hashlib

    data = os.urandom(1 << 20) * 3 + b"tail"  # more than one chunk
    blob = codec.encode("k", data)
    got: list[bytes] = []
    digest = hashlib.sha256(data).hexdigest()
    assert codec.decode_into("k", blob, digest, lambda c: got.append(bytes(c))) == len(data)
    assert b"".join(got) == data and (len(got) > 1 or codec.level is None)
    with pytest.raises(CorruptObjectError, match="k: damaged"):
        codec.decode_into("k", blob, hashlib.sha256(b"other").hexdigest(), lambda c: None)
    broken = blob[:-100] + bytes(100)
    with pytest.raises(CorruptObjectError, match="k: damaged"):
        codec.decode_into("k", broken, digest, lambda c: None)


def test_a_restore_trusts_the_frame_checksum_and_hashes_frames_without_one() -> None:
    import hashlib

    import zstandard

    data = os.urandom(1 << 19) * 3
    digest = hashlib.sha256(data).digest()
    codec = Codec(3, None)
    blob = codec.encode("k", data)
    assert zstandard.get_frame_parameters(blob[38:]).has_checksum
    # The frame's own checksum catches damaged content.
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CorruptObjectError, match="k: damaged"):
        codec.decode_into("k", flipped, digest.hex(), lambda c: None)
    # An object from before frames had checksums: its content is hashed.
    other = hashlib.sha256(b"other").digest()
    old = blob[:6] + other + zstandard.ZstdCompressor(level=3).compress(data)
    with pytest.raises(CorruptObjectError, match="checksum mismatch"):
        codec.decode_into("k", old, other.hex(), lambda c: None)
    good = blob[:6] + digest + zstandard.ZstdCompressor(level=3).compress(data)
    assert codec.decode_into("k", good, digest.hex(), lambda c: None) == len(data)


@pytest.mark.parametrize(
    "codec",
    [Codec(3, None), Codec(3, KEY), Codec(None, None), Codec(None, KEY)],
    ids=["zstd", "zstd-encrypted", "plain", "plain-encrypted"],
)
def test_the_streaming_encoder_writes_what_decode_reads(codec: Codec) -> None:
    """A part is encoded chunk by chunk (one sha256, one zstd stream) into the same
    object format: decode and decode_into read it, damage is found."""
    import hashlib

    data = os.urandom(1 << 18) * 9 + b"tail"
    enc = codec.encoder()
    for n in range(2):  # an encoder is reused for the next object
        enc.begin()
        view = memoryview(data)
        for at in range(0, len(data), 300_000):
            enc.update(view[at : at + 300_000])
        blob, digest = enc.finish(f"k{n}")
        assert digest == hashlib.sha256(data).hexdigest() and enc.size == len(data)
        assert codec.decode(f"k{n}", blob, digest) == data
        got = bytearray()
        assert codec.decode_into(f"k{n}", blob, digest, got.extend) == len(data)
        assert got == data
        broken = blob[:-100] + bytes(100)
        with pytest.raises(CorruptObjectError, match=f"k{n}: damaged"):
            codec.decode_into(f"k{n}", broken, digest, lambda c: None)
    if codec.level is not None:
        assert len(blob) < len(data) // 5


def test_puts_without_a_directory_sync_are_readable_and_synced_once(tmp_path: Path) -> None:
    repo = FsRepository(tmp_path / "repo")
    repo.put("db/backup/L/files/base/1/1259", b"a", sync_dir=False)
    repo.put("db/backup/L/files/global/1262", b"b", sync_dir=False)
    assert repo.get("db/backup/L/files/base/1/1259") == b"a"
    assert len(repo._unsynced) == 2
    repo.sync_dirs()
    assert not repo._unsynced
    repo.sync_dirs()  # nothing left: a no-op
    MemoryRepository().sync_dirs()
