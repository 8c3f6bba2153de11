"""The demo app's cache and database behaviour with real sockets and a real Redis.

The cache is a cache: reads are served from the records when Redis is gone (and
fast: the tier is skipped after one failure), a refused balancer is passed over for
the next one. The database failing over: a bounded wait, then 503 with Retry-After.
(`make demo` and the stack tests run the app against the whole stack.)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from free_ports import free_port
from waiting import wait_for

from spofless.client import Database
from spofless.demo._cache import CacheTier
from spofless.demo._records import RecordDatabase, RecordFile
from spofless.demo.app import DemoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (scripts/system-deps.sh installs it)")
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        wait_for("redis answering", lambda: _pings(client), timeout=10)
        client.close()
        yield port, proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[DemoServer] = []

    def start(server: DemoServer) -> int:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        body = (
            json.loads(data)
            if resp.getheader("Content-Type", "").startswith("application/json")
            else data
        )
        return resp.status, body, dict(resp.getheaders())
    finally:
        conn.close()


def test_reads_are_cached_and_served_without_the_cache(
    tmp_path: Path, redis_port: tuple[int, subprocess.Popen[bytes]], serve: Any
) -> None:
    port, proc = redis_port
    refused = free_port()  # nothing listens there: passed over for the next address
    cache = CacheTier([("127.0.0.1", refused), ("127.0.0.1", port)], timeout=0.5, pause=5)
    app = serve(DemoServer(("127.0.0.1", 0), RecordFile(tmp_path / "r.jsonl"), "web-0", cache))
    status, body, _ = call(app, "POST", "/write", b"one")
    # Written through to the cache; no replica, so WAIT 1 does not confirm it.
    assert status == 201 and body["id"] == 1 and body["cached"] is False
    status, body, headers = call(app, "GET", "/read?id=1")
    assert (status, body["value"], headers["X-Cache"]) == (200, "one", "hit")
    assert redis.Redis(port=port).get("demo:record:1") is not None
    assert call(app, "GET", "/read?id=7")[2]["X-Cache"] == "miss"
    assert call(app, "GET", "/")[1] == {"instance": "web-0", "records": 1, "cache": "miss"}

    proc.kill()
    proc.wait(timeout=10)
    start = time.monotonic()
    for _ in range(5):
        status, body, headers = call(app, "GET", "/read?id=1")
        assert (status, body["value"], headers["X-Cache"]) == (200, "one", "down")
    status, body, _ = call(app, "POST", "/write", b"two")
    assert status == 201 and body == {"id": 2, "instance": "web-0", "cached": False}
    assert time.monotonic() - start < 10  # a generous bound: no request hangs
    assert cache.state() == "down"


def test_a_timing_out_cache_pauses_the_tier(tmp_path: Path, serve: Any) -> None:
    """A balancer that accepts and never answers (a shard between two primaries)."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        address = silent.getsockname()
        cache = CacheTier([address], timeout=0.3, pause=5)
        app = serve(DemoServer(("127.0.0.1", 0), RecordFile(tmp_path / "r.jsonl"), "w", cache))
        assert call(app, "POST", "/write", b"x")[0] == 201
        for _ in range(5):
            status, _, headers = call(app, "GET", "/read?id=1")
            assert (status, headers["X-Cache"]) == (200, "down")
        # One connection tried (the write's), not one per request: the tier was skipped.
        silent.setblocking(False)
        accepted = []
        with contextlib.suppress(BlockingIOError):
            while True:
                accepted.append(silent.accept()[0])
        assert len(accepted) == 1
        for conn in accepted:
            conn.close()
    finally:
        silent.close()


def test_a_database_without_a_primary_answers_503_with_retry_after(serve: Any) -> None:
    """No member answers (a failover taking longer than --db-timeout): a bounded wait,
    then 503 with Retry-After, for writes and reads alike."""
    db = Database(lambda: [], failover_timeout=0.5)
    app = serve(DemoServer(("127.0.0.1", 0), RecordDatabase(db), "web-0"))
    start = time.monotonic()
    for method, path, body in (("POST", "/write", b"x"), ("GET", "/read?id=1", None)):
        status, answer, headers = call(app, method, path, body)
        assert status == 503 and headers["Retry-After"] == "2"
        assert "database is not available" in answer["error"]
    assert time.monotonic() - start < 20  # a generous bound: no request hangs
    assert call(app, "GET", "/healthz")[:2] == (200, b"ok\n")  # the app itself is fine


def test_sending_a_write_again_with_its_key_stores_it_once(tmp_path: Path) -> None:
    records = RecordFile(tmp_path / "r.jsonl")
    first = records.append("v", "web-0", "k1")
    assert records.append("v", "web-1", "k1") == first
    assert records.append("w", "web-0", "k2")["id"] == 2
    assert [r["id"] for r in records.all()] == [1, 2] and "key" not in records.all()[0]
