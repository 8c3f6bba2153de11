"""What a restore to a point loses, read from WAL bytes (spofless.backup._walscan).

The WAL here is built by hand in PostgreSQL 15's layout: 8 KiB pages with their
headers, records 8-byte aligned and split across pages; the integration test of
the restore drill reads a real server's WAL."""

from __future__ import annotations

import struct

import pytest

from spofless.backup._walscan import PAGE, commits

SEG = 4 * PAGE  # a small segment, so a test crosses one
EPOCH = 946_684_800


def commit(at: float, origin: bool = False) -> tuple[int, int, bytes]:
    """(rmid, info, body) of a commit record at epoch `at`."""
    data = struct.pack("<q", round((at - EPOCH) * 1e6))
    head = (bytes([253]) + struct.pack("<H", 7) if origin else b"") + bytes([255, len(data)])
    return 1, 0x00, head + data


def other(size: int, rmid: int = 10, info: int = 0x00) -> tuple[int, int, bytes]:
    """A record that is not a commit (a heap insert, an abort, a standby snapshot)."""
    return rmid, info, bytes([255, 0]) + bytes(size)


SWITCH = (0, 0x40, b"")
ABORT = (1, 0x20, commit(0)[2])


def build(base: int, records: list[tuple[int, int, bytes]]) -> tuple[bytes, list[int]]:
    """WAL from page-aligned `base` holding `records` (the first starting at `base`'s first
    record position); returns it and each record's start and the end."""
    starts: list[int] = []
    lsn = base

    def header_len(page: int) -> int:
        return 40 if page % SEG == 0 else 24

    chunks: list[tuple[int, bytes]] = []  # (lsn, bytes) without headers
    for rmid, info, body in records:
        lsn = (lsn + 7) & ~7
        if lsn % PAGE == 0:
            lsn += header_len(lsn)
        starts.append(lsn)
        rec = struct.pack("<IIQBBxxI", 24 + len(body), 0, 0, info, rmid, 0) + body
        pos, left = lsn, rec
        while left:
            if pos % PAGE == 0:
                pos += header_len(pos)
            take = min(len(left), PAGE - pos % PAGE)
            chunks.append((pos, left[:take]))
            pos, left = pos + take, left[take:]
        lsn = pos
        if (rmid, info) == (0, 0x40):
            lsn = (lsn // SEG + 1) * SEG
    end = lsn
    size = -(-(end - base) // PAGE) * PAGE + PAGE
    wal = bytearray(size)
    for page in range(base, base + size, PAGE):
        info = 0x0002 if page % SEG == 0 else 0
        struct.pack_into("<HHIQI", wal, page - base, 0xD110, info, 1, page, 0)
    for at, data in chunks:
        wal[at - base : at - base + len(data)] = data
    return bytes(wal), [*starts, end]


def test_no_commit_after_the_restored_point_means_nothing_lost() -> None:
    base = SEG  # a segment's first page: the long header
    wal, at = build(base, [commit(1000.0), other(100, rmid=8), other(30), SWITCH, other(50)])
    # Restored up to the end of the commit: what follows holds no commit.
    assert commits(wal, base, at[1], at[-1], SEG) == []
    # Restored up to before it: the commit is lost, with its time.
    assert commits(wal, base, at[0], at[-1], SEG) == [pytest.approx(1000.0)]
    assert commits(wal, base, at[0], at[0], SEG) == []


def test_commits_split_across_pages_and_segments_are_found_with_their_times() -> None:
    base = SEG
    records = [other(5000), other(6000), commit(2000.5, origin=True), other(9000), ABORT]
    records += [SWITCH, other(20), commit(2001.25)]
    wal, at = build(base, records)
    assert commits(wal, base, at[0], at[-1], SEG) == [
        pytest.approx(2000.5),
        pytest.approx(2001.25),
    ]
    # Only those that start before the end count.
    assert commits(wal, base, at[0], at[7], SEG) == [pytest.approx(2000.5)]
    # An abort is no lost commit.
    assert commits(wal, base, at[3], at[6], SEG) == []


def test_bytes_that_are_not_that_wal_are_unknown_not_nothing_lost() -> None:
    base = SEG
    wal, at = build(base, [other(100), commit(3000.0), other(10000)])
    # A recycled page: its address is another's.
    stale = bytearray(wal)
    struct.pack_into("<Q", stale, PAGE + 8, 12345 * PAGE)
    assert commits(bytes(stale), base, at[0], at[-1], SEG) is None
    # Zeroes where records should be.
    zeroed = wal[:100] + bytes(len(wal) - 100)
    assert commits(zeroed, base, at[0], at[-1], SEG) is None
    # Too few bytes for the stretch asked about.
    assert commits(wal[:200], base, at[0], at[-1], SEG) is None
    with pytest.raises(ValueError):
        commits(wal, base + 8, at[0], at[-1], SEG)


def test_the_drill_reports_rpo_zero_when_no_commit_was_lost() -> None:
    from spofless.backup import DrillResult

    def result(replayed: float | None, lost: int | None, reference: float) -> DrillResult:
        return DrillResult("L", 1, 1, 1, 1, 1, 1, replayed, reference, lost is not None, 0, 0, lost)

    # Idle for an hour, everything archived: nothing lost, whatever the clocks say.
    idle = result(1000.0, 0, 4600.0)
    assert idle.rpo == 0.0 and "no commit in the primary's WAL" in idle.lines()[-1]
    assert idle.to_json("db", "fs")["rpo"] == 0.0
    assert result(None, 0, 4600.0).rpo == 0.0  # no commit since the backup, none lost
    lost = result(1000.0, 2, 1002.5)  # the newest lost commit's time, from the WAL
    assert lost.rpo == 2.5 and "2 commits lost" in lost.lines()[-1]
    # The WAL could not be read: the clocks, as before.
    assert result(1000.0, None, 1060.0).rpo == 60.0
