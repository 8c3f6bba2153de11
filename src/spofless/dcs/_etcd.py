"""An asyncio client for etcd's v3 API through its JSON gateway (HTTP/1.1 + JSON).

Why the gateway and not gRPC: etcd serves it on every client URL since 3.3
(`/v3/...`, stable paths since 3.4), so one dependency (httpx, async, well
kept) is enough; Patroni talks to etcd 3 the same way. The Python gRPC
clients are either unmaintained (python-etcd3, aetcd) or pull grpcio and
pinned protobuf stubs into every install. The gateway costs a JSON + base64
encoding per call, negligible at coordination rates (a few calls per
second), and its long-lived watch is a streamed HTTP response we can
resume ourselves.

TLS: with `settings.tls` the client verifies each https member against the
CA and presents its certificate (members started by spofless require one).

Failover: the client talks to one member at a time and sticks to it. A
connection error, a timeout (`request_timeout`) or an "unavailable" answer
(no leader, leader changed, server timeout) moves it to the next member; a
call gives up with DCSUnavailable after `retry_timeout` in all. Requests
carry gRPC metadata `hasleader=true` (through the gateway's
`Grpc-Metadata-` headers) so a member cut off from its cluster refuses
them instead of serving a stale view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from spofless.dcs._errors import CompactedError, DCSRequestError, DCSUnavailable, LeaseNotFound
from spofless.dcs._etcd_codec import (
    decode_kv,
    encode_compare,
    encode_op,
    header_revision,
    range_request,
)
from spofless.dcs._etcd_watch import EtcdWatch
from spofless.dcs._settings import DCSSettings
from spofless.dcs._store import (
    Compare,
    KeyValueStore,
    Lease,
    Op,
    Put,
    RangeResult,
    TxnResult,
    Watch,
)

logger = logging.getLogger(__name__)

__all__ = ["EtcdStore"]

# gRPC status codes worth trying on another member: the request may not have been
# served (UNAVAILABLE: no leader, leader changed, server-side timeout; DEADLINE_EXCEEDED;
# ABORTED; INTERNAL covers "etcdserver: request timed out" relayed by some versions).
RETRYABLE_CODES = frozenset({4, 10, 13, 14})
GRPC_NOT_FOUND = 5
GRPC_OUT_OF_RANGE = 11  # "mvcc: required revision has been compacted" / future revision
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
# After every member failed once in a row, pause this long (or less) before the next
# round, so that instant refusals do not spin.
ROUND_PAUSE = 0.05


class EtcdStore(KeyValueStore):
    """A KeyValueStore on an etcd v3 cluster, given the client URLs of its members."""

    def __init__(
        self,
        endpoints: Sequence[str],
        settings: DCSSettings | None = None,
        *,
        watch_idle_timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        for url in endpoints:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"etcd endpoint must be http(s)://host:port, got {url!r}")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self.settings = settings or DCSSettings()
        # A watch that hears nothing (not even a progress notification) this long is
        # presumed stuck on a silent member and reconnects elsewhere, resuming.
        self.watch_idle_timeout = watch_idle_timeout
        self._current = 0
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        tls = self.settings.tls
        self._http = httpx.AsyncClient(
            headers=REQUIRE_LEADER,
            # With TLS: verify the member by the topology's CA, present our certificate.
            verify=tls.client_context() if tls is not None else True,
            timeout=self.settings.request_timeout,
            limits=httpx.Limits(max_keepalive_connections=len(self.endpoints) * 2),
        )

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current]

    def _failed(self, endpoint: str, why: str) -> None:
        """Move off endpoint (unless another call already did)."""
        if self.endpoints[self._current] == endpoint:
            self._current = (self._current + 1) % len(self.endpoints)
            logger.debug("etcd %s: %s; trying %s", endpoint, why, self.current_endpoint)

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST body to /v3{path} on the current member, failing over; the JSON answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.retry_timeout
        errors: list[str] = []
        failures_in_round = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DCSUnavailable(
                    f"no etcd member answered {path} within {self.settings.retry_timeout:g}s "
                    f"({'; '.join(errors[-len(self.endpoints) :]) or 'no attempt'})"
                )
            if failures_in_round >= len(self.endpoints):
                failures_in_round = 0
                await asyncio.sleep(min(ROUND_PAUSE, remaining))
                continue
            endpoint = self.current_endpoint
            timeout = min(self.settings.request_timeout, remaining)
            try:
                async with asyncio.timeout(timeout):
                    response = await self._http.post(
                        f"{endpoint}/v3{path}", json=body, timeout=timeout
                    )
                    answer = response.json() if response.content else {}
            # ssl.SSLError: a member refusing our certificate (TLS 1.3 says so on the first
            # read, which httpx does not wrap).
            except (httpx.TransportError, ssl.SSLError, TimeoutError, ValueError) as exc:
                why = f"{type(exc).__name__} {exc}".strip()
                errors.append(f"{endpoint}: {why}")
                self._failed(endpoint, why)
                failures_in_round += 1
                continue
            if response.status_code == 200:
                return answer if isinstance(answer, dict) else {}
            code = int(answer.get("code", 0)) if isinstance(answer, dict) else 0
            message = str(answer.get("message") or answer.get("error") or response.text)
            if code in RETRYABLE_CODES or response.status_code in (502, 503, 504):
                errors.append(f"{endpoint}: {message}")
                self._failed(endpoint, message)
                failures_in_round += 1
                continue
            if code == GRPC_NOT_FOUND and "lease" in message:
                raise LeaseNotFound(f"etcd: {message}")
            if code == GRPC_OUT_OF_RANGE and "compacted" in message:
                raise CompactedError(int(body.get("revision", 0)), 0)
            raise DCSRequestError(f"etcd {endpoint} rejected {path}: {message} (code {code})")

    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        answer = await self.call("/kv/range", range_request(key, prefix, revision))
        kvs = tuple(decode_kv(kv) for kv in answer.get("kvs", []))
        return RangeResult(kvs, header_revision(answer))

    async def put(self, key: str, value: str, *, lease: int = 0) -> int:
        answer = await self.call("/kv/put", encode_op(Put(key, value, lease))["request_put"])
        return header_revision(answer)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        answer = await self.call("/kv/deleterange", range_request(key, prefix))
        return int(answer.get("deleted", 0))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        body = {
            "compare": [encode_compare(c) for c in compare],
            "success": [encode_op(op) for op in success],
            "failure": [encode_op(op) for op in failure],
        }
        answer = await self.call("/kv/txn", body)
        responses = tuple(
            tuple(decode_kv(kv) for kv in r.get("response_range", {}).get("kvs", []))
            for r in answer.get("responses", [])
        )
        return TxnResult(bool(answer.get("succeeded", False)), header_revision(answer), responses)

    async def grant_lease(self, ttl: int) -> Lease:
        answer = await self.call("/lease/grant", {"TTL": ttl})
        if answer.get("error"):
            raise DCSRequestError(f"etcd refused a lease of {ttl}s: {answer['error']}")
        return Lease(int(answer["ID"]), int(answer.get("TTL", ttl)))

    async def keepalive(self, lease_id: int) -> int:
        answer = await self.call("/lease/keepalive", {"ID": str(lease_id)})
        ttl = int(answer.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        return ttl

    async def revoke_lease(self, lease_id: int) -> None:
        with contextlib.suppress(LeaseNotFound):
            await self.call("/lease/revoke", {"ID": str(lease_id)})

    async def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0) -> Watch:
        w = EtcdWatch(self, key, prefix, start_revision)
        self._watches.add(w)
        await w.connect(deadline=asyncio.get_running_loop().time() + self.settings.retry_timeout)
        return w

    def stream(self, endpoint: str, body: dict[str, Any]) -> httpx.Request:
        """The request that opens a watch stream on endpoint."""
        return self._http.build_request(
            "POST", f"{endpoint}/v3/watch", json=body, timeout=httpx.Timeout(None)
        )

    async def send_stream(self, request: httpx.Request) -> httpx.Response:
        return await self._http.send(request, stream=True)

    async def close(self) -> None:
        for w in list(self._watches):
            await w.close()
        await self._http.aclose()
