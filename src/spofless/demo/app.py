"""The demo web service: `python -m spofless.demo.app --port P [--data FILE]`.

Small on purpose (the standard library's threading HTTP server), for the
examples, tests and drills:

    GET  /healthz      200 "ok" while the instance serves
    POST /write        stores the request body (up to 64 KiB) as one record;
                       201 {"id": n, "instance": ...} only once it is on disk (fsync)
    GET  /read         200 {"records": [...]} every record stored, in order
    GET  /read?id=N    200 the record N, 404 when there is none
    GET  /             200 {"instance": ..., "records": count}

Records are appended as JSON lines to `--data`; several instances on one
machine may share the file (appends hold an exclusive flock). A later issue
stores them in PostgreSQL instead. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 64 * 1024


class RecordFile:
    """Append-only JSON-lines records, safe across threads and processes (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def append(self, value: str, instance: str) -> int:
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            record_id = sum(1 for _ in f) + 1
            record = {"id": record_id, "value": value, "instance": instance, "at": time.time()}
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
            return record_id

    def read(self) -> list[dict[str, Any]]:
        with open(self.path, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            return [json.loads(line) for line in f if line.endswith("\n")]


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.path == "/healthz":
            return  # probed several times a second: not worth a line each
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, body: Any) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode() + b"\n"
        self.send_response(status)
        ctype = "text/plain" if isinstance(body, str) else "application/json"
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(HTTPStatus.OK, "ok")
        elif url.path == "/read":
            records = self.server.records.read()
            ids = parse_qs(url.query).get("id")
            if ids is None:
                self._send(HTTPStatus.OK, {"records": records})
                return
            try:
                wanted = int(ids[0])
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "id must be an integer"})
                return
            found = [r for r in records if r["id"] == wanted]
            if found:
                self._send(HTTPStatus.OK, found[0])
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no record {wanted}"})
        elif url.path == "/":
            count = len(self.server.records.read())
            self._send(HTTPStatus.OK, {"instance": self.server.instance, "records": count})
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {url.path}"})

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
        record_id = self.server.records.append(value, self.server.instance)
        self._send(HTTPStatus.CREATED, {"id": record_id, "instance": self.server.instance})


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], records: RecordFile, instance: str) -> None:
        self.records = records
        self.instance = instance
        super().__init__(address, Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spofless.demo.app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--data", type=Path, default=Path("demo-records.jsonl"))
    parser.add_argument("--name", default=None, help="instance name in replies")
    args = parser.parse_args(argv)
    try:
        server = DemoServer(
            (args.host, args.port), RecordFile(args.data), args.name or f"{args.host}:{args.port}"
        )
    except OSError as exc:
        print(f"demo app: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    # shutdown() must come from another thread than serve_forever's.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"demo app {server.instance} listening, records in {args.data}", file=sys.stderr)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
