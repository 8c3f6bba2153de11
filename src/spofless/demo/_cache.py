"""The demo app's client of the cache tier: Redis through load balancers in mode redis.

It is a cache: every failure of it is a miss, and the app serves from the database.

    several addresses        the tier's load balancers, the one on the app's own host
                             first; one that refuses or drops the connection is left
                             out for `pause` seconds and the next is tried at once
    a timeout                (a shard between two primaries: the balancer holds its
                             commands) the whole tier is skipped for `pause` seconds,
                             so requests do not each wait out the timeout
    an error reply           (-CLUSTERDOWN, -CROSSSLOT, ...) that command is a miss
    put(..., confirm=True)   SET, then WAIT 1 on the same connection: True only when a
                             replica of the key's shard has it, so the key survives a
                             failover of its shard (docs/cache.md)

Every call is bounded by `timeout` per address tried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)


class CacheTier:
    """get/put against the first usable address; never raises for a cache failure."""

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        *,
        timeout: float = 0.5,
        pause: float = 2.0,
        wait_ms: int = 200,
    ) -> None:
        if not addresses:
            raise ValueError("the cache tier needs at least one address")
        self.addresses = list(addresses)
        self.pause = pause
        self.wait_ms = wait_ms
        self._clients = [
            redis.Redis(
                host=host,
                port=port,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
                protocol=2,
            )
            for host, port in self.addresses
        ]
        self._down_until = [0.0] * len(self.addresses)
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str | None, str]:
        """(value, "hit") or (None, "miss"), or (None, "down") when the tier did not answer."""
        found = self._run(lambda r: r.get(key))
        if found is _DOWN:
            return None, "down"
        value = found if isinstance(found, str) else None
        return value, "hit" if value is not None else "miss"

    def put(self, key: str, value: str, ttl: int, *, confirm: bool = False) -> bool:
        """SET key (expiring after `ttl` s); with `confirm`, True only when WAIT says a
        replica has it, else True when the primary took it."""

        def op(r: redis.Redis) -> object:
            pipe = r.pipeline(transaction=False)
            pipe.set(key, value, ex=ttl)
            if confirm:
                pipe.execute_command("WAIT", 1, self.wait_ms)  # type: ignore[no-untyped-call]
            return pipe.execute()

        done = self._run(op)
        if not isinstance(done, list) or done[0] is not True:
            return False
        return not confirm or int(done[1]) >= 1

    def state(self) -> str:
        """`up`, or `down` while every address is left out or the tier is paused."""
        now = time.monotonic()
        if now < self._paused_until or all(now < t for t in self._down_until):
            return "down"
        return "up"

    def close(self) -> None:
        for c in self._clients:
            c.close()

    def _run(self, op: object) -> object:
        assert callable(op)
        now = time.monotonic()
        if now < self._paused_until:
            return _DOWN
        for i, client in enumerate(self._clients):
            if now < self._down_until[i]:
                continue
            try:
                return op(client)
            except redis.TimeoutError as exc:
                self._mark(None, f"timed out ({exc})")
                return _DOWN
            except redis.ConnectionError as exc:
                self._mark(i, f"{exc}")
                continue
            except redis.RedisError as exc:  # an error reply: this command is a miss
                logger.info("cache: %s", exc)
                return None
        return _DOWN

    def _mark(self, index: int | None, why: str) -> None:
        until = time.monotonic() + self.pause
        with self._lock:
            if index is None:
                self._paused_until = until
                where = "the cache tier"
            else:
                self._down_until[index] = until
                host, port = self.addresses[index]
                where = f"cache {host}:{port}"
        logger.warning("%s: %s; skipped for %gs", where, why, self.pause)


_DOWN = object()  # the tier did not answer (as opposed to a miss)
