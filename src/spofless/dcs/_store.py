"""The key-value store interface every coordination backend implements."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

CompareTarget = Literal["value", "version", "create", "mod", "lease"]
CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as stored. Revisions are the store's global, increasing write counter."""

    key: str
    value: str
    create_revision: int  # revision of the put that created the key (0: deleted)
    mod_revision: int  # revision of the last change (for a delete event: the deletion)
    version: int  # number of puts since creation (0: deleted)
    lease: int = 0  # id of the lease the key is attached to, 0 for none


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch. A delete carries the key and its deletion revision."""

    type: Literal["put", "delete"]
    kv: KeyValue

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    """The keys read and the store's revision at the time of the read."""

    kvs: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds granted by the store (it may raise a too-short ttl)


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction: `target(key) op operand`.

    A missing key has value "", version 0, create and mod revision 0, lease 0, so
    `Compare.create_revision(k, "==", 0)` means "k does not exist".
    """

    key: str
    target: CompareTarget
    op: CompareOp
    operand: str | int

    @classmethod
    def value(cls, key: str, op: CompareOp, value: str) -> Compare:
        return cls(key, "value", op, value)

    @classmethod
    def version(cls, key: str, op: CompareOp, version: int) -> Compare:
        return cls(key, "version", op, version)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, "create", op, revision)

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, "mod", op, revision)

    @classmethod
    def lease(cls, key: str, op: CompareOp, lease_id: int) -> Compare:
        return cls(key, "lease", op, lease_id)


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: str
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    key: str
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether every compare held, the revision after the transaction, and one entry per
    operation of the branch taken: the keys a Get read, () for a Put or a Delete."""

    succeeded: bool
    revision: int
    responses: tuple[tuple[KeyValue, ...], ...]


def prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with prefix (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # empty prefix: every key


class Watch(abc.ABC, AsyncIterator[Event]):
    """The events of a key or prefix, in revision order, each exactly once.

    Iterating never raises DCSUnavailable: the watch reconnects (to another member
    if needed) and resumes at `next_revision`, so no event is missed or repeated;
    bound your wait with asyncio.timeout. It raises CompactedError when the
    revision to resume from was compacted while it was disconnected. Close it
    (or use `async with`) to release its connection.
    """

    @property
    @abc.abstractmethod
    def next_revision(self) -> int:
        """The revision of the next event this watch will deliver, at the earliest."""

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Event: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class KeyValueStore(abc.ABC):
    """A linearizable key-value store with revisions, leases, transactions and watches.

    Contract, for every implementation:

    - Every write (put, delete, the whole of a txn) is atomic and gets one new
      revision; all writes of a txn share it. Revisions only grow. A write that
      changes nothing (deleting a missing key, a txn of reads) does not bump it.
    - Reads are linearizable: they see every write acknowledged before they started.
    - A txn checks every Compare and runs the success or the failure branch, atomically.
      That is the only compare-and-swap; build every guarded write on it.
    - A key put with a lease is deleted (with a delete event) when the lease expires
      or is revoked. A lease expires `ttl` seconds after its last grant or keep-alive
      *reached the store*, never earlier.
    - When no member answers within `retry_timeout`, a call raises DCSUnavailable.
      Then the write may or may not have been applied (a plain put retried on another
      member may even be applied twice): only writes guarded by a Compare are safe to
      retry blindly. Rejected requests raise DCSRequestError, a missing lease
      LeaseNotFound, a compacted revision CompactedError. All derive from DCSError.
    - Watches: see `Watch`.
    """

    @abc.abstractmethod
    async def range(self, key: str, *, prefix: bool = False, revision: int = 0) -> RangeResult:
        """The key (or every key under the prefix, sorted) at `revision` (0: latest)."""

    async def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None when it does not exist."""
        result = await self.range(key)
        return result.kvs[0] if result.kvs else None

    @abc.abstractmethod
    async def put(self, key: str, value: str, *, lease: int = 0) -> int:
        """Set key to value (attached to lease when not 0); return the new revision."""

    @abc.abstractmethod
    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete the key (or every key under the prefix); return how many were deleted."""

    @abc.abstractmethod
    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """If every compare holds run `success`, else `failure`, atomically."""

    @abc.abstractmethod
    async def grant_lease(self, ttl: int) -> Lease:
        """A new lease that expires ttl seconds after its last renewal reached the store."""

    @abc.abstractmethod
    async def keepalive(self, lease_id: int) -> int:
        """Renew the lease; return its ttl. Raise LeaseNotFound when it has expired."""

    @abc.abstractmethod
    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke the lease and delete its keys; a lease already gone is not an error."""

    @abc.abstractmethod
    async def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0) -> Watch:
        """Watch key (or prefix) from start_revision (0: from now).

        Returns once the watch is established: every change after the call returned is
        delivered. Raises DCSUnavailable when no member accepts it within
        retry_timeout; CompactedError when start_revision was compacted (here or, from
        etcd, on the first iteration).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Watches opened from this store stop."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
