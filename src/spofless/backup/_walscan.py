"""Commit records in a stretch of WAL: what a restore to a point would lose, read from the WAL.

A restore drill's RPO is what a loss of every server at the drill's start would
have cost. The restored instance replayed the archive up to LSN `R`; the primary
had written WAL up to `P`. Whatever was committed in between is lost, and
nothing else: WAL without a commit (an idle server's standby snapshots, a
checkpoint, a segment switch) loses no data. So the drill reads the primary's WAL
from `R` to `P` (`pg_read_binary_file`, a read query) and `commits` lists the
commit records that start there, with their commit times, which the records
carry (no `track_commit_timestamp` needed):

- none: RPO 0, however long ago the last commit was (an idle database with
  everything archived);
- some: RPO is the newest lost commit's time minus the last replayed commit's.

`commits` returns None when the bytes are not that WAL (a page whose address is
not its own: the segment was recycled, or belongs to another timeline; a
record running past the bytes given): the drill then falls back to the
primary's commit timestamps or its clock, which overstates.

The format (PostgreSQL 15, access/xlog_internal.h, access/xlogrecord.h): 8 KiB
pages, each with a header (24 bytes, 40 on a segment's first page) whose
`xlp_pageaddr` is the page's own LSN; records 8-byte aligned, split across pages
after the next page's header; a record's header holds its total length, its
resource manager and info bits; an XLOG_SWITCH record fills its segment.
"""

from __future__ import annotations

import struct

PAGE = 8192
_SHORT_HEADER = 24
_LONG_HEADER = 40
_XLP_LONG_HEADER = 0x0002
_RECORD_HEADER = 24
_RM_XLOG = 0
_RM_XACT = 1
_XLOG_SWITCH = 0x40
_XLOG_XACT_OPMASK = 0x70
_XACT_COMMITS = (0x00, 0x30)  # XLOG_XACT_COMMIT, XLOG_XACT_COMMIT_PREPARED
_PG_EPOCH = 946_684_800  # 2000-01-01 UTC, where PostgreSQL's timestamps count from


class _NotThatWal(Exception):
    pass


def commits(wal: bytes, base: int, start: int, end: int, seg_size: int) -> list[float] | None:
    """Commit times (epoch seconds) of the commit records that start in [start, end).

    `wal` is the WAL from `base` (page-aligned, at most `start`) to at least `end`;
    `start` is where a record ends (e.g. the last one a restore replayed). None when
    the bytes are not a consistent WAL stream (see the module docstring)."""
    if base % PAGE or base > start or start > end:
        raise ValueError("base must be page-aligned and base <= start <= end")
    try:
        return _Reader(wal, base, seg_size).commits(start, end)
    except _NotThatWal:
        return None


class _Reader:
    def __init__(self, wal: bytes, base: int, seg_size: int) -> None:
        self.wal, self.base, self.seg_size = wal, base, seg_size

    def _header_len(self, page: int) -> int:
        """The header length of the page at LSN `page`, checked to be that page's."""
        at = page - self.base
        if at < 0 or at + _SHORT_HEADER > len(self.wal):
            raise _NotThatWal
        _magic, info, _tli, addr = struct.unpack_from("<HHIQ", self.wal, at)
        if addr != page:
            raise _NotThatWal
        return _LONG_HEADER if info & _XLP_LONG_HEADER else _SHORT_HEADER

    def _skip_header(self, lsn: int) -> int:
        """`lsn`, or past the page header when it is a page's first byte."""
        return lsn + self._header_len(lsn) if lsn % PAGE == 0 else lsn

    def _read(self, lsn: int, n: int) -> tuple[bytes, int]:
        """`n` bytes of record data from `lsn` (skipping the page headers between); the
        bytes and the LSN after them."""
        out = bytearray()
        while n > 0:
            lsn = self._skip_header(lsn)
            take = min(n, PAGE - lsn % PAGE)
            at = lsn - self.base
            if at + take > len(self.wal):
                raise _NotThatWal
            out += self.wal[at : at + take]
            lsn, n = lsn + take, n - take
        return bytes(out), lsn

    def commits(self, start: int, end: int) -> list[float]:
        found: list[float] = []
        lsn = start
        while True:
            lsn = (lsn + 7) & ~7
            if lsn >= end:
                return found
            lsn = self._skip_header(lsn)
            if lsn >= end:
                return found
            head, after = self._read(lsn, _RECORD_HEADER)
            total, _xid, _prev, info, rmid = struct.unpack_from("<IIQBB", head)
            if total < _RECORD_HEADER:
                raise _NotThatWal  # not a record: zeroes or garbage before `end`
            if rmid == _RM_XACT and info & _XLOG_XACT_OPMASK in _XACT_COMMITS:
                body, _ = self._read(after, total - _RECORD_HEADER)
                found.append(_commit_time(body))
            if rmid == _RM_XLOG and info & 0xF0 == _XLOG_SWITCH:
                lsn = (lsn // self.seg_size + 1) * self.seg_size  # the rest is unused
                continue
            lsn = self._end(lsn, total)

    def _end(self, lsn: int, total: int) -> int:
        """The LSN after a record of `total` bytes at `lsn` (its pages' headers between)."""
        left = total
        while left > 0:
            lsn = self._skip_header(lsn) if lsn % PAGE == 0 else lsn
            take = min(left, PAGE - lsn % PAGE)
            lsn, left = lsn + take, left - take
        return lsn


def _commit_time(body: bytes) -> float:
    """A commit record's time: its main data starts with `xact_time` (xl_xact_commit).

    The record's data headers come first: a commit has no block references, maybe a
    replication origin (253) or a top-level xid (252), then the main data's length
    (255: one byte, 254: four)."""
    at = 0
    while at < len(body):
        block_id = body[at]
        if block_id == 255:
            at += 2
            break
        if block_id == 254:
            at += 5
            break
        if block_id == 253:
            at += 3
        elif block_id == 252:
            at += 5
        else:
            raise _NotThatWal  # a block reference: not the commit record we know
    if at + 8 > len(body):
        raise _NotThatWal
    micros: int = struct.unpack_from("<q", body, at)[0]
    return _PG_EPOCH + micros / 1e6
