"""One Redis server run by its agent: the process (tied to the agent's life) and the few
commands the agent sends it (INFO, REPLICAOF, CONFIG SET min-replicas-to-write)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from spofless._linux import die_with_parent
from spofless.cache._settings import FENCED_MIN_REPLICAS, CacheSettings
from spofless.cache.decide import Role

logger = logging.getLogger(__name__)

# Every command the agent sends is answered in milliseconds by a live Redis; a frozen
# one must not hold up the loop that renews the lease.
COMMAND_TIMEOUT = 1.0
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# A running Redis that misses this many observations in a row is taken as hung (and
# restarted); fewer are a slow moment on a busy machine, not worth a restart.
MISSED_OBSERVATIONS = 3
# redis-server writes its pid here (in the member's data directory) when it starts.
PIDFILE = "redis.pid"


@dataclass(frozen=True, slots=True)
class RedisState:
    """What INFO replication and CONFIG GET say; role None when Redis does not answer."""

    role: Role | None = None
    offset: int = 0
    fenced: bool = False
    master: str | None = None  # a replica's primary, host:port
    link_up: bool = False


# Where a Redis started with no leader to follow replicates from: an address of the
# documentation range (RFC 5737), never reachable. Until it is promoted, such a Redis
# answers NOMASTERLINK to a replica asking it for a sync, so a restarted primary (empty,
# on its old address, which its old replicas reconnect to) never hands them its empty
# data set: they keep theirs until one of them is promoted.
NOBODY = ("192.0.2.1", 9)


def server_argv(s: CacheSettings, replica_of: tuple[str, int] | None) -> list[str]:
    """redis-server's command line: no persistence (a cache; a restarted member resyncs
    from its shard's primary), diskless full syncs, always started as a replica (of the
    leader, else of NOBODY) and fenced; only the lease holder is ever promoted."""
    argv = [
        s.redis_server,
        "--port", str(s.port),
        "--bind", s.host,
        "--dir", str(s.data_dir),
        "--daemonize", "no",
        "--protected-mode", "no",
        "--save", "",
        "--appendonly", "no",
        "--repl-diskless-sync", "yes",
        "--repl-diskless-sync-delay", "0",
        "--replica-read-only", "yes",
        "--min-replicas-max-lag", "10",
        "--min-replicas-to-write", str(FENCED_MIN_REPLICAS),
        "--logfile", "",
        # Read by `spofless status` (the pid a fault is aimed at), also while the agent
        # is frozen; a stale file after kill -9 names a dead pid, which it checks.
        "--pidfile", str(s.data_dir / PIDFILE),
    ]  # fmt: skip
    if s.maxmemory is not None:
        argv += ["--maxmemory", s.maxmemory, "--maxmemory-policy", "allkeys-lru"]
    host, port = replica_of or NOBODY
    argv += ["--replicaof", host, str(port)]
    return argv


def _tied(parent_pid: int) -> None:  # pragma: no cover - runs in the child
    if not die_with_parent(signal.SIGKILL, parent_pid):
        os._exit(126)


class RedisServer:
    """The agent's Redis: start, stop, observe and the role changes."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.last = RedisState()
        self.missed = 0
        self.client = aioredis.Redis(
            host=settings.host,
            port=settings.port,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            decode_responses=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, replica_of: tuple[str, int] | None) -> None:
        """Start redis-server (killing a hung one first) and wait until it answers."""
        await self.stop()
        self.missed = 0
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        self.proc = await asyncio.create_subprocess_exec(
            *server_argv(self.settings, replica_of),
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=lambda: _tied(pid),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline and self.alive:
            with contextlib.suppress(RedisError, OSError):
                if await self.client.ping():
                    return
            await asyncio.sleep(0.05)
        logger.warning("%s: Redis did not answer within %gs", self.settings.name, START_TIMEOUT)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def observe(self) -> RedisState:
        if not self.alive:
            self.last = RedisState()
            return self.last
        try:
            info = await self.client.info("replication")
            fence = await self.client.config_get("min-replicas-to-write")
        except (RedisError, OSError) as exc:
            self.missed += 1
            logger.warning("%s: Redis did not answer (%s)", self.settings.name, exc)
            if self.missed >= MISSED_OBSERVATIONS:
                self.last = RedisState()
            return self.last
        self.missed = 0
        role: Role = "primary" if info.get("role") == "master" else "replica"
        master = None
        if role == "replica":
            master = f"{info.get('master_host')}:{info.get('master_port')}"
        self.last = RedisState(
            role=role,
            offset=int(info.get("master_repl_offset", 0)),
            fenced=int(str(fence.get("min-replicas-to-write") or 0)) >= FENCED_MIN_REPLICAS,
            master=master,
            link_up=info.get("master_link_status") == "up",
        )
        return self.last

    async def fence(self) -> None:
        """Refuse writes (NOREPLICAS) from now on; reads still served."""
        await self.client.config_set("min-replicas-to-write", FENCED_MIN_REPLICAS)

    async def unfence(self) -> None:
        await self.client.config_set("min-replicas-to-write", self.settings.min_replicas_to_write)

    async def promote(self) -> None:
        # Fenced until the lease holder's agent decides to accept writes (next step).
        await self.client.config_set("min-replicas-to-write", FENCED_MIN_REPLICAS)
        await self.client.replicaof("NO", "ONE")
        await self.unfence()

    async def follow(self, host: str, port: int) -> None:
        """Become a replica of host:port; a primary is fenced first."""
        await self.fence()
        await self.client.replicaof(host, port)

    async def close(self) -> None:
        await self.stop()
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
