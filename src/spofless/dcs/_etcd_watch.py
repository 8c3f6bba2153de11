"""A resumable etcd watch over the JSON gateway's streamed /v3/watch response.

The stream is one HTTP response of newline-separated JSON messages. The
watch remembers the revision of the next event it owes its reader; when the
stream breaks, goes silent for `watch_idle_timeout` (a stopped member), or
the member loses its leader (the server cancels `hasleader` streams), it
reopens the stream on the next member from that revision. etcd replays
history from there, so no event is lost or repeated, unless that revision was
compacted meanwhile: then CompactedError. Members started by spofless send a
progress notification every 2 s, so a healthy quiet watch is never idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from spofless.dcs._errors import CompactedError, DCSUnavailable
from spofless.dcs._etcd_codec import decode_kv, header_revision, range_request
from spofless.dcs._store import Event, Watch

if TYPE_CHECKING:
    from spofless.dcs._etcd import EtcdStore

logger = logging.getLogger(__name__)

# Reconnecting forever: pause between rounds over every member, doubling up to this.
MAX_BACKOFF = 1.0


class _Reconnect(Exception):
    """This stream is done (broken, cancelled, member without leader): open another."""


class EtcdWatch(Watch):
    def __init__(self, store: EtcdStore, key: str, prefix: bool, start_revision: int) -> None:
        self._store = store
        self._key = key
        self._prefix = prefix
        self._scanned = start_revision  # every event before it is delivered or in _ready
        self._ready: deque[Event] = deque()
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._endpoint = ""
        self._closed = False

    @property
    def next_revision(self) -> int:
        return self._ready[0].revision if self._ready else self._scanned

    def _create_request(self) -> dict[str, Any]:
        req = range_request(self._key, self._prefix) | {"progress_notify": True}
        if self._scanned:
            req["start_revision"] = self._scanned
        return {"create_request": req}

    async def connect(self, deadline: float | None) -> None:
        """Open a stream on a member, failing over; give up at deadline (None: never)."""
        store = self._store
        loop = asyncio.get_running_loop()
        backoff = 0.05
        failures = 0
        last = ""
        while not self._closed:
            if deadline is not None and loop.time() >= deadline:
                raise DCSUnavailable(f"no etcd member accepted a watch on {self._key!r} ({last})")
            if failures >= len(store.endpoints):
                failures = 0
                logger.warning("watch %s: no member reachable (%s), retrying", self._key, last)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            endpoint = store.current_endpoint
            timeout = store.settings.request_timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - loop.time()))
            try:
                async with asyncio.timeout(timeout):
                    await self._open(endpoint)
                return
            except (_Reconnect, httpx.HTTPError, ssl.SSLError, TimeoutError, ValueError) as exc:
                last = f"{endpoint}: {type(exc).__name__} {exc}".strip()
                await self._drop()
                store._failed(endpoint, f"watch {self._key}: {str(exc) or type(exc).__name__}")
                failures += 1
            except BaseException:
                await self._drop()
                raise

    async def _open(self, endpoint: str) -> None:
        self._endpoint = endpoint
        request = self._store.stream(endpoint, self._create_request())
        self._response = await self._store.send_stream(request)
        if self._response.status_code != 200:
            body = (await self._response.aread()).decode(errors="replace")
            raise _Reconnect(f"HTTP {self._response.status_code} {body[:200]}")
        self._lines = self._response.aiter_lines()
        first = await anext(self._lines)
        self._handle(first)  # the "created" message
        logger.debug("watch %s: open on %s from %d", self._key, endpoint, self._scanned)

    def _handle(self, line: str) -> None:
        if not line.strip():
            return
        message = json.loads(line)
        if "error" in message:
            raise _Reconnect(str(message["error"].get("message", message["error"])))
        result: dict[str, Any] = message.get("result", {})
        compact = int(result.get("compact_revision", 0))
        if compact:
            raise CompactedError(self._scanned, compact)
        if result.get("canceled"):
            raise _Reconnect(f"cancelled: {result.get('cancel_reason', 'no reason given')}")
        events = [
            Event("delete" if raw.get("type") == "DELETE" else "put", decode_kv(raw.get("kv", {})))
            for raw in result.get("events", [])
        ]
        if events:
            # Skipping what was delivered cannot matter with etcd; it is cheap to be sure.
            self._ready.extend(e for e in events if e.revision >= self._scanned)
            self._scanned = max(self._scanned, events[-1].revision + 1)
        elif result.get("created") and not self._scanned:
            self._scanned = header_revision(result) + 1
        elif not result.get("created"):
            # A progress notification: every event up to this revision has been sent.
            self._scanned = max(self._scanned, header_revision(result) + 1)

    async def __anext__(self) -> Event:
        while not self._ready:
            if self._closed:
                raise StopAsyncIteration
            if self._lines is None:
                await self.connect(deadline=None)
                continue
            try:
                async with asyncio.timeout(self._store.watch_idle_timeout):
                    line = await anext(self._lines)
                self._handle(line)
            except CompactedError:
                await self.close()
                raise
            except (
                _Reconnect,
                StopAsyncIteration,
                httpx.HTTPError,
                ssl.SSLError,
                TimeoutError,
                ValueError,
            ) as exc:
                why = f"{type(exc).__name__} {exc}".strip()
                logger.info(
                    "watch %s: stream on %s ended (%s), resuming from %d",
                    self._key,
                    self._endpoint,
                    why,
                    self._scanned,
                )
                await self._drop()
                self._store._failed(self._endpoint, f"watch {self._key}: {why}")
        return self._ready.popleft()

    async def _drop(self) -> None:
        lines, response = self._lines, self._response
        self._lines = self._response = None
        if lines is not None and hasattr(lines, "aclose"):
            with contextlib.suppress(Exception):
                await lines.aclose()
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()

    async def close(self) -> None:
        self._closed = True
        await self._drop()
