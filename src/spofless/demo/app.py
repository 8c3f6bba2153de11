"""The demo web service: `python -m spofless.demo.app --port P [--db C --cache C | --data F]`.

A small application of the reference architecture (the standard library's threading
HTTP server), for `make demo`, the examples, tests and drills:

    GET  /healthz      200 "ok" while the instance serves (not its database: a
                       failover must not take every app server out of its balancer)
    POST /write        stores the request body (up to 64 KiB) as one record; 201
                       {"id": n, "instance": ..., "cached": bool} once it is committed
                       (`Idempotency-Key: K` makes sending it again store it once)
    GET  /read         200 {"records": [...]} every record stored, in order
    GET  /read?id=N    200 the record N (header X-Cache: hit, miss or down), 404 when
                       there is none
    GET  /             200 {"instance": ..., "records": count, "cache": ...}

With `--db C` the records are in PostgreSQL component C, through
spofless.client.Database: writes on the primary (idempotent by key, so retried
across a failover), reads on the replicas. With `--cache C` reads are cached in the
cache tier behind load balancer C (mode redis): a record is written through to the
cache (SET, then WAIT 1: `cached` says whether a replica has it), a read that misses
fills it. The cache is a cache: when it does not answer, reads are served from the
database (X-Cache: down). When the database cannot answer within `--db-timeout`
(a failover taking longer, no primary), the answer is 503 with Retry-After, never a
hang. Both are found through the topology file `up` names in SPOFLESS_TOPOLOGY
(or `--topology`), the instance from SPOFLESS_COMPONENT and SPOFLESS_INSTANCE.

Without `--db`, records are appended as JSON lines to `--data`; several instances on
one machine may share the file (appends hold an exclusive flock). SIGTERM stops it
cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from spofless.demo._cache import CacheTier
from spofless.demo._records import DatabaseUnavailable, RecordFile, Records

MAX_BODY = 64 * 1024
RECORD_TTL = 3600  # a record never changes: cached for an hour
COUNT_TTL = 1  # the count changes with every write: a second
RETRY_AFTER = 2  # seconds, in a 503 while the database fails over


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.path == "/healthz":
            return  # probed several times a second: not worth a line each
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode() + b"\n"
        self.send_response(status)
        ctype = "text/plain" if isinstance(body, str) else "application/json"
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _unavailable(self, exc: DatabaseUnavailable) -> None:
        self._send(
            HTTPStatus.SERVICE_UNAVAILABLE,
            {"error": f"the database is not available (failing over?): {exc}"},
            {"Retry-After": str(RETRY_AFTER)},
        )

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path == "/healthz":
                self._send(HTTPStatus.OK, "ok")
            elif url.path == "/read":
                self._read(parse_qs(url.query).get("id"))
            elif url.path == "/":
                count, cache = self.server.count()
                body = {"instance": self.server.instance, "records": count}
                self._send(HTTPStatus.OK, body | ({"cache": cache} if cache else {}))
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {url.path}"})
        except DatabaseUnavailable as exc:
            self._unavailable(exc)

    def _read(self, ids: list[str] | None) -> None:
        if ids is None:
            self._send(HTTPStatus.OK, {"records": self.server.records.all()})
            return
        try:
            wanted = int(ids[0])
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "id must be an integer"})
            return
        record, cache = self.server.record(wanted)
        headers = {"X-Cache": cache} if cache else {}
        if record is not None:
            self._send(HTTPStatus.OK, record, headers)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no record {wanted}"}, headers)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/write":
            self._send(HTTPStatus.NOT_FOUND, {"error": "POST /write only"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY}"})
            return
        body = self.rfile.read(length)
        try:
            value = body.decode("utf-8")
        except UnicodeDecodeError:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "body must be UTF-8"})
            return
        key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
        try:
            record_id, cached = self.server.write(value, key)
        except DatabaseUnavailable as exc:
            self._unavailable(exc)
            return
        answer: dict[str, Any] = {"id": record_id, "instance": self.server.instance}
        if self.server.cache is not None:
            answer["cached"] = cached
        self._send(HTTPStatus.CREATED, answer)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        records: Records,
        instance: str,
        cache: CacheTier | None = None,
    ) -> None:
        self.records = records
        self.instance = instance
        self.cache = cache
        super().__init__(address, Handler)

    def write(self, value: str, key: str) -> tuple[int, bool]:
        """Store a record, then write it through to the cache; (id, whether a cache
        replica has it)."""
        record = self.records.append(value, self.instance, key)
        if self.cache is None:
            return int(record["id"]), False
        cached = self.cache.put(_key(record["id"]), json.dumps(record), RECORD_TTL, confirm=True)
        return int(record["id"]), cached

    def record(self, record_id: int) -> tuple[dict[str, Any] | None, str | None]:
        """The record and how the cache answered (None: no cache)."""
        if self.cache is None:
            return self.records.get(record_id), None
        cached, how = self.cache.get(_key(record_id))
        if cached is not None:
            return json.loads(cached), how
        found = self.records.get(record_id)
        if found is not None and how == "miss":
            self.cache.put(_key(record_id), json.dumps(found), RECORD_TTL)
        return found, how

    def count(self) -> tuple[int, str | None]:
        if self.cache is None:
            return self.records.count(), None
        cached, how = self.cache.get("demo:count")
        if cached is not None and cached.isdigit():
            return int(cached), how
        n = self.records.count()
        if how == "miss":
            self.cache.put("demo:count", str(n), COUNT_TTL)
        return n, how


def _key(record_id: int) -> str:
    return f"demo:record:{record_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spofless.demo.app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--name", default=None, help="instance name in replies")
    parser.add_argument("--data", type=Path, default=Path("demo-records.jsonl"),
                        help="the records file (without --db)")  # fmt: skip
    parser.add_argument(
        "--db", metavar="COMPONENT", help="keep the records in this postgres component"
    )
    parser.add_argument("--cache", metavar="COMPONENT",
                        help="cache reads behind this load balancer (mode redis)")  # fmt: skip
    parser.add_argument(
        "--topology",
        type=Path,
        default=os.environ.get("SPOFLESS_TOPOLOGY"),
        help="the topology file (default: $SPOFLESS_TOPOLOGY, set by up)",
    )
    parser.add_argument(
        "--db-timeout",
        type=float,
        default=10.0,
        help="seconds a request waits for the database (a failover) before its 503",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    instance = args.name or f"{args.host}:{args.port}"
    try:
        records, cache, where = _backends(args)
    except (ValueError, OSError) as exc:
        print(f"demo app: {exc}", file=sys.stderr)
        return 2
    try:
        server = DemoServer((args.host, args.port), records, instance, cache)
    except OSError as exc:
        print(f"demo app: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    # shutdown() must come from another thread than serve_forever's.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"demo app {instance} listening, {where}", file=sys.stderr)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if cache is not None:
            cache.close()
        close = getattr(records, "close", None)
        if close is not None:
            close()
    return 0


def _backends(args: argparse.Namespace) -> tuple[Records, CacheTier | None, str]:
    """The records store and the cache the options name; ValueError saying what is wrong."""
    if args.db is None and args.cache is None:
        return RecordFile(args.data), None, f"records in {args.data}"
    from spofless.demo._wiring import cache_tier, record_database

    if args.topology is None:
        raise ValueError("--db and --cache need the topology: --topology FILE or SPOFLESS_TOPOLOGY")
    if args.db is not None:
        records: Records = record_database(args.topology, args.db, args.db_timeout)
        where = f"records in PostgreSQL ({args.db})"
    else:
        records, where = RecordFile(args.data), f"records in {args.data}"
    cache = None
    if args.cache is not None:
        cache = cache_tier(args.topology, args.cache)
        shown = ", ".join(f"{h}:{p}" for h, p in cache.addresses)
        where += f", reads cached through {args.cache} ({shown})"
    return records, cache, where


if __name__ == "__main__":
    sys.exit(main())
