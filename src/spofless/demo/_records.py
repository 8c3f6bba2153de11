"""Where the demo app keeps its records: a JSON-lines file, or PostgreSQL.

Both stores have one interface (`Records`): `append(value, instance, key)` stores a
record and returns it, `get(id)`, `all()` and `count()` read. `key` names the request
that stored it: storing the same key twice stores one record (returned again), so a
write cut off by a failover can be sent again safely.

    RecordFile(path)       records appended to a file (flock); several instances on
                           one machine may share it
    RecordDatabase(db)     records in PostgreSQL through spofless.client.Database:
                           writes on the primary (retried across a failover: they are
                           idempotent by key), reads on a replica, falling back to the
                           primary for a record a lagging replica does not have yet

`DatabaseUnavailable` is raised when PostgreSQL cannot answer within the database's
failover timeout (a failover that takes longer, no primary): the app answers 503.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import psycopg

from spofless.client import Database, NoPrimary

Record = dict[str, Any]

TABLE = "demo_records"
SCHEMA = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    request_key text NOT NULL UNIQUE,
    value text NOT NULL,
    instance text NOT NULL,
    at double precision NOT NULL
)"""
# One statement for a new record and for a key stored before (the no-op update makes
# RETURNING give the existing row's id).
INSERT = f"""INSERT INTO {TABLE} (request_key, value, instance, at) VALUES (%s, %s, %s, %s)
ON CONFLICT (request_key) DO UPDATE SET request_key = EXCLUDED.request_key
RETURNING id, value, instance, at"""
COLUMNS = "id, value, instance, at"


class DatabaseUnavailable(Exception):
    """PostgreSQL did not answer within the failover timeout; try again later."""


class Records(Protocol):
    def append(self, value: str, instance: str, key: str) -> Record: ...
    def get(self, record_id: int) -> Record | None: ...
    def all(self) -> list[Record]: ...
    def count(self) -> int: ...


class RecordFile:
    """Append-only JSON-lines records, safe across threads and processes (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def append(self, value: str, instance: str, key: str) -> Record:
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            records = [json.loads(line) for line in f if line.endswith("\n")]
            for r in records:
                if r.pop("key", None) == key:
                    return dict(r)
            record: Record = {
                "id": len(records) + 1,
                "value": value,
                "instance": instance,
                "at": time.time(),
                "key": key,
            }
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
            del record["key"]
            return record

    def all(self) -> list[Record]:
        with open(self.path, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            records = [json.loads(line) for line in f if line.endswith("\n")]
        for r in records:
            r.pop("key", None)
        return records

    def get(self, record_id: int) -> Record | None:
        return next((r for r in self.all() if r["id"] == record_id), None)

    def count(self) -> int:
        return len(self.all())


def _record(row: tuple[Any, ...]) -> Record:
    return {"id": row[0], "value": row[1], "instance": row[2], "at": row[3]}


class RecordDatabase:
    """The records in PostgreSQL; the table is made on the first write."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._schema_done = False
        self._schema_lock = threading.Lock()

    def append(self, value: str, instance: str, key: str) -> Record:
        self._ensure_schema()
        rows = self._call(self.db.execute, INSERT, (key, value, instance, time.time()),
                          idempotent=True)  # fmt: skip
        return _record(rows[0])

    def get(self, record_id: int) -> Record | None:
        sql = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s"
        rows = self._read(sql, (record_id,))
        if not rows:
            # A replica a few milliseconds behind may not have it yet: ask the primary.
            rows = self._read(sql, (record_id,), replica=False)
        return _record(rows[0]) if rows else None

    def all(self) -> list[Record]:
        return [_record(r) for r in self._read(f"SELECT {COLUMNS} FROM {TABLE} ORDER BY id")]

    def count(self) -> int:
        rows = self._read(f"SELECT count(*) FROM {TABLE}")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        self.db.close()

    def _read(
        self, sql: str, params: tuple[Any, ...] = (), *, replica: bool = True
    ) -> list[tuple[Any, ...]]:
        try:
            return self._call(self.db.execute, sql, params, read_only=replica, idempotent=True)
        except psycopg.errors.UndefinedTable:
            return []  # no record written yet

    def _ensure_schema(self) -> None:
        if self._schema_done:
            return
        with self._schema_lock:
            if self._schema_done:
                return
            # UniqueViolation, DuplicateTable: another instance made it at the same moment.
            with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                self._call(self.db.execute, SCHEMA, idempotent=True)
            self._schema_done = True

    @staticmethod
    def _call(fn: Any, *args: Any, **kw: Any) -> list[tuple[Any, ...]]:
        try:
            return list(fn(*args, **kw))
        except (NoPrimary, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc
