"""The fence witness: a synchronous standby inside the agent that acknowledges only
while the agent's leader lease is valid by its own monotonic clock.

The hole it closes: a primary node frozen (SIGSTOP, a VM pause) past the ttl
wakes up with PostgreSQL and the agent resuming at the same instant. A replica
has been promoted meanwhile. Until the agent's event loop has run the lease-lost
callback that stops PostgreSQL, the old primary can still commit; in
asynchronous mode it acknowledges that commit, which the new primary never sees.

With the witness, the leader's `synchronous_standby_names` always names a
synchronous standby whose acknowledgement depends on the lease: in asynchronous
mode (or synchronous mode degraded) that is the witness itself. Commits then
wait for the witness's flush report, and the witness checks `may_acknowledge()`
(the lease, against the monotonic clock) immediately before every report. After
a freeze it finds the lease expired and never reports, so every commit waits
until the agent stops PostgreSQL, and its client sees an error, never an
acknowledgement. In synchronous mode with a real synchronous replica the
replica is the fence already: it follows only the leader named in etcd, so it
does not acknowledge a deposed primary's commits.

The witness speaks PostgreSQL's streaming replication protocol (v3, physical,
replication=true) over one TCP connection, discards the WAL it receives and
reports the end of what it received as written and flushed. It never writes
anything to disk; it is not a replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

WITNESS_NAME = "spofless_fence"  # its application_name in pg_stat_replication
PROTOCOL_V3 = 196608
_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds


def witness_standby_names() -> str:
    """synchronous_standby_names that makes every commit wait for the witness."""
    return f'FIRST 1 ("{WITNESS_NAME}")'


def with_witness(names: str) -> str:
    """`FIRST 1 ("a")` -> `FIRST 2 ("a", "<witness>")`: commits wait for both."""
    head, _, rest = names.partition("(")
    count = int(head.split()[1]) + 1
    return f'FIRST {count} ({rest.rstrip(")")}, "{WITNESS_NAME}")'


class WitnessError(Exception):
    """The replication connection failed or the server refused it (the task reconnects)."""


def _startup(user: str) -> bytes:
    params = b"".join(
        k.encode() + b"\0" + v.encode() + b"\0"
        for k, v in (
            ("user", user),
            ("replication", "true"),
            ("application_name", WITNESS_NAME),
        )
    )
    body = struct.pack("!i", PROTOCOL_V3) + params + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def status_update(position: int, reply: bool = False) -> bytes:
    """A Standby Status Update reporting `position` written, flushed and applied."""
    now_us = int(time.time() * 1_000_000) - _PG_EPOCH_US
    body = b"r" + struct.pack("!QQQqB", position, position, position, now_us, int(reply))
    return _message(b"d", body)


class FenceWitness:
    """One replication connection to the local primary; `run()` until cancelled."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        may_acknowledge: Callable[[], bool],
        user: str = "postgres",
        connect_timeout: float = 2.0,
        unix_socket: str | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.may_acknowledge = may_acknowledge
        self.user = user
        self.connect_timeout = connect_timeout
        # With authentication on, the server's Unix socket (peer authentication): the
        # witness speaks neither TLS nor SCRAM, and needs neither there.
        self.unix_socket = unix_socket
        self.streaming = asyncio.Event()  # set while START_REPLICATION runs
        self.received = 0  # end of the WAL received so far
        self.acknowledged = 0  # the last position reported
        self.refused = 0  # reports withheld because the lease was not valid

    async def run(self, retry: float = 0.1) -> None:
        """Stream, and reconnect after any failure, until cancelled."""
        while True:
            try:
                await self._stream()
            except (OSError, WitnessError, asyncio.IncompleteReadError, TimeoutError) as exc:
                logger.debug("%s: fence witness reconnecting: %s", self.name, exc)
            finally:
                self.streaming.clear()
            await asyncio.sleep(retry)

    async def _stream(self) -> None:
        opening = (
            asyncio.open_unix_connection(self.unix_socket)
            if self.unix_socket
            else asyncio.open_connection(self.host, self.port)
        )
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await opening
        try:
            writer.write(_startup(self.user))
            await self._until_ready(reader)
            rows = await self._simple_query(reader, writer, "IDENTIFY_SYSTEM")
            timeline, xlogpos = int(rows[0][1]), rows[0][2]
            start = f"START_REPLICATION PHYSICAL {xlogpos} TIMELINE {timeline}\0"
            writer.write(_message(b"Q", start.encode()))
            await writer.drain()
            kind, body = await self._read(reader)
            if kind != b"W":
                raise WitnessError(f"START_REPLICATION answered {kind!r}: {_error_text(body)}")
            self.streaming.set()
            logger.info("%s: fence witness streaming from %s", self.name, xlogpos)
            ticker = asyncio.create_task(self._tick(writer))
            try:
                await self._copy_both(reader, writer)
            finally:
                ticker.cancel()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _copy_both(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            kind, body = await self._read(reader)
            if kind == b"d" and body[:1] == b"w":
                start, _end, _sent = struct.unpack_from("!QQq", body, 1)
                self.received = max(self.received, start + len(body) - 25)
                self._report(writer, reply=False)
            elif kind == b"d" and body[:1] == b"k":
                _wal_end, _sent, reply = struct.unpack_from("!QqB", body, 1)
                if reply:
                    self._report(writer, reply=False)
            elif kind == b"c":
                raise WitnessError("the server ended the replication stream")
            elif kind == b"E":
                raise WitnessError(_error_text(body))
            await writer.drain()

    async def _tick(self, writer: asyncio.StreamWriter, every: float = 0.1) -> None:
        """Report again what a refused report left unacknowledged (and keep the link warm)."""
        while True:
            await asyncio.sleep(every)
            if self.received > self.acknowledged:
                self._report(writer, reply=False)

    def _report(self, writer: asyncio.StreamWriter, reply: bool) -> None:
        # The lease is checked against the clock immediately before every report: after a
        # freeze, this is the first thing that runs, and it finds the lease expired.
        if not self.may_acknowledge():
            self.refused += 1
            return
        writer.write(status_update(self.received, reply))
        self.acknowledged = self.received

    # -- the protocol's plumbing ----------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head = await reader.readexactly(5)
        (length,) = struct.unpack("!i", head[1:])
        return head[:1], await reader.readexactly(length - 4)

    async def _until_ready(self, reader: asyncio.StreamReader) -> None:
        while True:
            async with asyncio.timeout(self.connect_timeout):
                kind, body = await self._read(reader)
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise WitnessError("the server asks for a password; the witness needs trust")
            if kind == b"E":
                raise WitnessError(_error_text(body))
            if kind == b"Z":
                return

    async def _simple_query(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sql: str
    ) -> list[list[str]]:
        writer.write(_message(b"Q", sql.encode() + b"\0"))
        await writer.drain()
        rows: list[list[str]] = []
        while True:
            async with asyncio.timeout(self.connect_timeout):
                kind, body = await self._read(reader)
            if kind == b"D":
                (n,) = struct.unpack_from("!h", body)
                off, row = 2, []
                for _ in range(n):
                    (size,) = struct.unpack_from("!i", body, off)
                    off += 4
                    row.append(body[off : off + size].decode() if size >= 0 else "")
                    off += max(size, 0)
                rows.append(row)
            elif kind == b"E":
                raise WitnessError(_error_text(body))
            elif kind == b"Z":
                if not rows:
                    raise WitnessError(f"{sql} returned no row")
                return rows


def _error_text(body: bytes) -> str:
    fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
    return fields.get(b"M", "unknown error")


__all__ = [
    "WITNESS_NAME",
    "FenceWitness",
    "WitnessError",
    "status_update",
    "with_witness",
    "witness_standby_names",
]
