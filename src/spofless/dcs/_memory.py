"""An in-memory KeyValueStore with the same semantics as etcd, for tests of pure logic.

Revisions, leases that expire on a controllable clock, compare-and-swap
transactions, watches that replay from a revision, compaction, and an
`available` switch that makes every call raise DCSUnavailable.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from spofless.dcs._errors import CompactedError, DCSRequestError, DCSUnavailable, LeaseNotFound
from spofless.dcs._store import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    KeyValueStore,
    Lease,
    Op,
    Put,
    RangeResult,
    TxnResult,
    Watch,
)

__all__ = ["ManualClock", "MemoryStore"]


class ManualClock:
    """A clock that moves only when told to: `MemoryStore(clock=ManualClock())`."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Lease:
    ttl: int
    expires_at: float
    keys: set[str] = field(default_factory=set)


_MISSING = KeyValue(key="", value="", create_revision=0, mod_revision=0, version=0, lease=0)


def _holds(c: Compare, kv: KeyValue | None) -> bool:
    if kv is None and c.target == "value":
        return False  # as etcd: a value compare on a missing key always fails
    kv = kv or _MISSING
    actual: str | int
    if c.target == "value":
        actual = kv.value
    elif c.target == "version":
        actual = kv.version
    elif c.target == "create":
        actual = kv.create_revision
    elif c.target == "mod":
        actual = kv.mod_revision
    else:
        actual = kv.lease
    if type(actual) is not type(c.operand):
        raise DCSRequestError(f"compare {c.target} of {c.key!r} with {c.operand!r}: wrong type")
    if c.op == "==":
        return actual == c.operand
    if c.op == "!=":
        return actual != c.operand
    if c.op == "<":
        return actual < c.operand  # type: ignore[operator]
    return actual > c.operand  # type: ignore[operator]


def _matches(key: str, wanted: str, prefix: bool) -> bool:
    return key.startswith(wanted) if prefix else key == wanted


class MemoryStore(KeyValueStore):
    """A KeyValueStore in this process. Leases expire on `clock` (any call, or
    `expire_leases()`, notices; watches check every 50 ms)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.available = True  # False: every call raises DCSUnavailable, watches stall
        self._revision = 1  # etcd's first write is revision 2
        self._compact_revision = 0
        self._data: dict[str, KeyValue] = {}
        self._history: list[Event] = []
        self._history_revs: list[int] = []
        self._leases: dict[int, _Lease] = {}
        self._next_lease_id = 0x7E57_0001
        self._changed = asyncio.Event()

    @property
    def revision(self) -> int:
        return self._revision

    # -- bookkeeping ---------------------------------------------------------------

    def _enter(self) -> None:
        if not self.available:
            raise DCSUnavailable("memory store is set unavailable")
        self.expire_leases()

    def expire_leases(self) -> None:
        """Revoke every lease whose time is up (each in its own revision, as etcd does)."""
        now = self.clock()
        for lease_id in [i for i, lease in self._leases.items() if lease.expires_at <= now]:
            self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id)
        self._write([Delete(k) for k in sorted(lease.keys)])

    def _write(self, ops: Sequence[Op]) -> tuple[tuple[KeyValue, ...], ...]:
        """Apply ops as one transaction at one new revision (if anything changes)."""
        rev = self._revision + 1
        events: list[Event] = []
        responses: list[tuple[KeyValue, ...]] = []
        for op in ops:
            if isinstance(op, Get):
                responses.append(self._read(op.key, op.prefix))
                continue
            responses.append(())
            if isinstance(op, Put):
                if op.lease and op.lease not in self._leases:
                    raise LeaseNotFound(f"lease {op.lease:x} not found")
                old = self._data.get(op.key)
                if old is not None and old.lease and old.lease in self._leases:
                    self._leases[old.lease].keys.discard(op.key)
                kv = KeyValue(
                    key=op.key,
                    value=op.value,
                    create_revision=old.create_revision if old else rev,
                    mod_revision=rev,
                    version=old.version + 1 if old else 1,
                    lease=op.lease,
                )
                self._data[op.key] = kv
                if op.lease:
                    self._leases[op.lease].keys.add(op.key)
                events.append(Event("put", kv))
            else:
                for kv in self._read(op.key, op.prefix):
                    del self._data[kv.key]
                    if kv.lease in self._leases:
                        self._leases[kv.lease].keys.discard(kv.key)
                    gone = replace(_MISSING, key=kv.key, mod_revision=rev)
                    events.append(Event("delete", gone))
        if events:
            self._revision = rev
            self._history.extend(events)
            self._history_revs.extend(e.revision for e in events)
            self._changed.set()
            self._changed = asyncio.Event()
        return tuple(responses)

    def _read(self, key: str, prefix: bool) -> tuple[KeyValue, ...]:
        if not prefix:
            kv = self._data.get(key)
            return (kv,) if kv else ()
        return tuple(self._data[k] for k in sorted(self._data) if k.startswith(key))

    def compact(self, revision: int) -> None:
        """Refuse reads and watches before revision from now on (as `etcdctl compact`).

        The history itself is kept: this store is for tests, and keeping it makes reads
        at any later revision exact."""
        self._compact_revision = max(self._compact_revision, revision)

    # -- the interface -------------------------------------------------------------

    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        self._enter()
        if revision == 0 or revision == self._revision:
            return RangeResult(self._read(key, prefix), self._revision)
        if revision > self._revision:
            raise DCSRequestError(f"revision {revision} is in the future ({self._revision})")
        if revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        # Replay the history up to revision.
        state: dict[str, KeyValue] = {}
        for e in self._history[: bisect.bisect_right(self._history_revs, revision)]:
            if not _matches(e.kv.key, key, prefix):
                continue
            if e.type == "put":
                state[e.kv.key] = e.kv
            else:
                state.pop(e.kv.key, None)
        return RangeResult(tuple(state[k] for k in sorted(state)), self._revision)

    async def put(self, key: str, value: str, *, lease: int = 0) -> int:
        self._enter()
        self._write([Put(key, value, lease)])
        return self._revision

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        self._enter()
        count = len(self._read(key, prefix))
        self._write([Delete(key, prefix)])
        return count

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._enter()
        ok = all(_holds(c, self._data.get(c.key)) for c in compare)
        responses = self._write(success if ok else failure)
        return TxnResult(ok, self._revision, responses)

    async def grant_lease(self, ttl: int) -> Lease:
        self._enter()
        if ttl < 1:
            raise DCSRequestError(f"lease ttl must be at least 1 second, got {ttl}")
        lease_id = self._next_lease_id
        self._next_lease_id += 1
        self._leases[lease_id] = _Lease(ttl, self.clock() + ttl)
        return Lease(lease_id, ttl)

    async def keepalive(self, lease_id: int) -> int:
        self._enter()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(f"lease {lease_id:x} not found (expired or revoked)")
        lease.expires_at = self.clock() + lease.ttl
        return lease.ttl

    async def revoke_lease(self, lease_id: int) -> None:
        self._enter()
        if lease_id in self._leases:
            self._revoke(lease_id)

    async def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0) -> Watch:
        self._enter()
        start = start_revision or self._revision + 1
        if start < self._compact_revision:
            raise CompactedError(start, self._compact_revision)
        return _MemoryWatch(self, key, prefix, start)

    async def close(self) -> None:
        pass


class _MemoryWatch(Watch):
    def __init__(self, store: MemoryStore, key: str, prefix: bool, start: int) -> None:
        self._store = store
        self._key = key
        self._prefix = prefix
        self._scanned = start  # every event before this revision is in _ready or delivered
        self._ready: deque[Event] = deque()
        self._closed = False

    @property
    def next_revision(self) -> int:
        return self._ready[0].revision if self._ready else self._scanned

    async def __anext__(self) -> Event:
        store = self._store
        while not self._ready:
            if self._closed:
                raise StopAsyncIteration
            if store.available:
                store.expire_leases()
                if self._scanned < store._compact_revision:
                    raise CompactedError(self._scanned, store._compact_revision)
                start = bisect.bisect_left(store._history_revs, self._scanned)
                for event in store._history[start:]:
                    if _matches(event.kv.key, self._key, self._prefix):
                        self._ready.append(event)
                self._scanned = store._revision + 1
                if self._ready:
                    break
            # Poll too: leases expire with time, not only with writes.
            try:
                async with asyncio.timeout(0.05):
                    await store._changed.wait()
            except TimeoutError:
                pass
        return self._ready.popleft()

    async def close(self) -> None:
        self._closed = True
