"""SQL writers for drills: unique increasing ids inserted every 10-20 ms, and what each saw.

A writer runs in a thread on one libpq connection string (a multi-host string
with `target_session_attrs=read-write`, or a load balancer's read-write address).
Each insert is its own transaction. Its outcome is one of:

- acknowledged: COMMIT returned without a warning; remembered with the server
  (port) that acknowledged it and the time;
- uncertain: it failed, timed out, or COMMIT returned with PostgreSQL's
  "canceling wait for synchronous replication" warning (the commit is local only):
  it may or may not be there at the end, and is neither acknowledged nor lost.

A frozen (SIGSTOPped) server never answers, and the kernel keeps the TCP
connection alive for it: every statement is bounded by a watchdog that shuts
the socket down, which makes libpq fail at once. A writer never runs longer
than RUN_BOUND, whatever its caller does.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")
# The warning of a commit that was written locally but whose wait for a synchronous
# standby was cancelled: the client must not count it as durable.
SYNC_CANCELLED = "canceling wait for synchronous replication"
STATEMENT_BOUND = 1.0  # seconds an insert may take before the writer gives up on it
RUN_BOUND = 180.0  # the writer never runs longer than this, whatever the test does


@dataclass(frozen=True, slots=True)
class Ack:
    id: int
    port: int  # the server that acknowledged it
    at: float  # time.monotonic() when the answer arrived


@dataclass(frozen=True, slots=True)
class Attempt:
    """One insert as the client saw it: when it was sent and answered, and how it ended
    (`acknowledged`, `uncertain` or `failed`)."""

    id: int | None  # None: no connection could be made to send it
    start: float  # time.monotonic()
    end: float
    outcome: str
    detail: str = ""


@dataclass
class WriterReport:
    acks: list[Ack] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)  # every try, in order
    failed: int = 0  # attempts that got no answer (connection refused, timeout, error)
    attempted: list[int] = field(default_factory=list)  # every id tried, in order
    uncertain: list[int] = field(default_factory=list)  # tried, outcome unknown

    @property
    def acknowledged(self) -> list[int]:
        return [a.id for a in self.acks]

    def window(self, after: float) -> float:
        """The write-unavailability window: the longest gap between two consecutive
        acknowledgements that ends after `after` (the fault's time)."""
        gaps = [b.at - a.at for a, b in zip(self.acks, self.acks[1:], strict=False) if b.at > after]
        return max(gaps, default=0.0)

    def acked_after(self, t: float) -> list[Ack]:
        return [a for a in self.acks if a.at > t]

    def late_acks_by(self, old_port: int, new_port: int) -> list[Ack]:
        """Acknowledgements by the old primary after the new one acknowledged a write."""
        if old_port == new_port:
            return []
        first_new = next((i for i, a in enumerate(self.acks) if a.port == new_port), None)
        if first_new is None:
            return []
        return [a for a in self.acks[first_new:] if a.port == old_port]


class SqlWriter:
    """Inserts into `table (id)` every 10-20 ms on `conninfo` until stopped."""

    def __init__(
        self,
        conninfo: str,
        table: str = "t",
        first_id: int = 1,
        *,
        interval: tuple[float, float] = (0.010, 0.020),
        run_bound: float = RUN_BOUND,
    ) -> None:
        self.conninfo = conninfo
        self.interval = interval  # seconds between two inserts, drawn uniformly
        self.run_bound = run_bound
        self.table = table
        self.next_id = first_id
        self.report = WriterReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> SqlWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> WriterReport:
        self._stop.set()
        self._thread.join(self.run_bound)
        return self.report

    def attempts(self) -> list[Attempt]:
        """The attempts so far (a copy: the writer goes on)."""
        with self._lock:
            return list(self.report.attempts)

    def acks_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for a in self.report.acks if a.at > t)

    def _run(self) -> None:
        deadline = time.monotonic() + self.run_bound
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            ident: int | None = None
            start = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = bounded(lambda: psycopg.connect(self.conninfo, autocommit=True))
                ident, self.next_id = self.next_id, self.next_id + 1
                self.report.attempted.append(ident)
                warned = self._insert(conn, ident)
                now = time.monotonic()
                port = int(conn.info.port)
                with self._lock:
                    if warned:
                        self.report.uncertain.append(ident)
                        self.report.attempts.append(
                            Attempt(ident, start, now, "uncertain", SYNC_CANCELLED)
                        )
                    else:
                        self.report.acks.append(Ack(ident, port, now))
                        self.report.attempts.append(
                            Attempt(ident, start, now, "acknowledged", f"port {port}")
                        )
            except psycopg.Error as exc:
                with self._lock:
                    self.report.failed += 1
                    if ident is not None:
                        self.report.uncertain.append(ident)
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    self.report.attempts.append(
                        Attempt(ident, start, time.monotonic(), "failed", first[:200])
                    )
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            time.sleep(random.uniform(*self.interval))
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _insert(self, conn: psycopg.Connection[Any], ident: int) -> bool:
        """Insert `ident`; whether COMMIT came back with the synchronous-wait warning."""
        sql = f"INSERT INTO {self.table} (id) VALUES (%s)"
        notices: list[str] = []
        handler = _collect(notices)
        conn.add_notice_handler(handler)
        try:
            bounded(lambda: conn.execute(sql, (ident,)), conn)
        finally:
            conn.remove_notice_handler(handler)
        return any(SYNC_CANCELLED in n for n in notices)


def bounded(
    call: Callable[[], T],
    conn: psycopg.Connection[Any] | None = None,
    bound: float = STATEMENT_BOUND,
) -> T:
    """Run call(); past `bound` seconds shut the connection's socket down so it fails."""
    timer: threading.Timer | None = None
    if conn is not None:
        fd = conn.fileno()
        timer = threading.Timer(bound, _shutdown, (fd,))
        timer.start()
    try:
        result: T = call()
        return result
    finally:
        if timer is not None:
            timer.cancel()


def _shutdown(fd: int) -> None:
    with contextlib.suppress(OSError):
        s = socket.socket(fileno=fd)
        try:
            s.shutdown(socket.SHUT_RDWR)
        finally:
            s.detach()  # the fd belongs to libpq


def _collect(into: list[str]) -> Callable[[psycopg.errors.Diagnostic], None]:
    def handler(diag: psycopg.errors.Diagnostic) -> None:
        into.append(diag.message_primary or "")

    return handler
