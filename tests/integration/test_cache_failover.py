"""The cache tier for real: `spofless up` of two Redis shards (cache-a: a primary and two
replicas, cache-b: a primary and one) behind a load balancer in mode redis, a writer and a
reader (redis-py) through it, and kill -9 of one shard's primary under that load.

What must hold: no SET acknowledged with `WAIT 1` is lost (the promoted replica has
it); the other shard's keys keep being read without one error; the killed primary
comes back (restarted by the supervisor) as a replica of the new one.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from stack_fixtures import StackRun, free_port_block, stack_run
from waiting import wait_for

from spofless.lb._resp import ShardRing

pytestmark = pytest.mark.integration

LOAD_SECONDS = 60.0  # bound of the load loops, whatever happens
LOAD_OPS = 50_000


def topology(ports: dict[str, int], a_extra: str = "") -> str:
    return f"""name: cache-failover
hosts: {{h1: {{}}, h2: {{}}, h3: {{}}}}
components:
  lb:
    kind: load_balancer
    instances: [h1, h3]
    mode: redis
    port: {ports["lb"]}
    lb: {{response_timeout: 15}}
    routes: [{{to: cache-a}}, {{to: cache-b, read_from: replica}}]
  cache-a:
    {{kind: cache, instances: [h1, h2, h3], port: {ports["a"]},
      api_port: {ports["a_api"]}{a_extra}}}
  cache-b: {{kind: cache, instances: [h2, h3], port: {ports["b"]}, api_port: {ports["b_api"]}}}
  etcd:
    kind: etcd
    instances: [h1, h2, h3]
    min_up: majority
    port: {ports["etcd"]}
    peer_port: {ports["peer"]}
entry: [lb]
"""


@pytest.fixture(params=[""])
def cache_stack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[StackRun, dict[str, int]]]:
    for program in ("redis-server", "etcd"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} not installed (scripts/system-deps.sh installs it)")
    ports: dict[str, int] = {}
    taken: list[int] = []
    for name in ("lb", "a", "a_api", "b", "b_api", "etcd", "peer"):
        ports[name] = free_port_block(3, taken)
        taken += range(ports[name], ports[name] + 3)
    path = tmp_path / "cache.yaml"
    path.write_text(topology(ports, request.param))
    with stack_run(path, tmp_path / "state") as run:
        yield run, ports


def agent_status(api_port: int) -> dict[str, Any] | None:
    try:
        body = httpx.get(f"http://127.0.0.1:{api_port}/status", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def primary_of(api_base: int) -> int | None:
    """The index of the shard's writable primary, or None."""
    for i in range(3):
        s = agent_status(api_base + i)
        if s and s["role"] == "primary" and s["leader"] and not s["fenced"]:
            return i
    return None


def roles(run: StackRun, component: str) -> dict[str, str | None]:
    """The role `spofless status` shows of each instance of `component`."""
    docs = run.status()["instances"]
    return {d["name"]: d["role"] for d in docs if d["component"] == component}


def expected_roles(primary: int) -> dict[str, str | None]:
    return {f"cache-a/{i}": "primary" if i == primary else "replica" for i in range(3)}


def streaming_replica(api_port: int) -> bool:
    s = agent_status(api_port)
    return bool(s and s["role"] == "replica" and s["link_up"])


class Load:
    """A writer (SET then WAIT 1 on one connection) over both shards, a reader of
    cache-b's keys, and a pipelined reader of both shards' keys (16 GETs at once,
    which the load balancer sends as batches): bounded in operations and time."""

    def __init__(self, port: int, b_keys: dict[str, str]) -> None:
        self.port = port
        self.b_keys = b_keys
        self.stop = threading.Event()
        self.acked: dict[str, str] = {}
        self.acked_list: list[tuple[str, str]] = []  # the same, for the pipelined reader
        self.write_errors: list[str] = []
        self.read_errors: list[str] = []
        self.reads = 0
        self.pipelines = 0
        self.pipelined_wrong: list[str] = []  # a reply that is not its command's
        self.pipelined_b_errors: list[str] = []
        self.pipelined_a_errors = 0  # cache-a's keys while it has no primary: allowed
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_pipelined, daemon=True),
        ]

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, single_connection_client=True, socket_timeout=20,
            socket_connect_timeout=5, decode_responses=True, protocol=2,
        )  # fmt: skip

    def _write(self) -> None:
        r = self.client()
        deadline = time.monotonic() + LOAD_SECONDS
        for i in range(LOAD_OPS):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            key, value = f"w:{i}", f"v{i}"
            try:
                r.set(key, value)
                if int(r.execute_command("WAIT", 1, 1000)) >= 1:
                    self.acked[key] = value
                    self.acked_list.append((key, value))
            except redis.RedisError as exc:
                self.write_errors.append(f"{key}: {exc}")
                r = self.client()
        r.close()

    def _read(self) -> None:
        r = self.client()
        keys = list(self.b_keys)
        deadline = time.monotonic() + LOAD_SECONDS
        for i in range(LOAD_OPS):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            key = keys[i % len(keys)]
            try:
                got = r.get(key)
                self.reads += 1
                if got != self.b_keys[key]:
                    self.read_errors.append(f"{key}: {got!r}")
            except redis.RedisError as exc:
                self.read_errors.append(f"{key}: {exc}")
                r = self.client()
        r.close()

    def _read_pipelined(self) -> None:
        r = self.client()
        b_items = list(self.b_keys.items())
        deadline = time.monotonic() + LOAD_SECONDS
        for i in range(LOAD_OPS):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            # Acknowledged writes (on both shards: a failover keeps them) and cache-b's
            # keys, interleaved.
            items = [*self.acked_list[-8:], *b_items[(i * 8) % len(b_items) :][:8]]
            pipe = r.pipeline(transaction=False)
            for key, _ in items:
                pipe.get(key)
            try:
                got = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:  # the connection, not a command's error
                self.pipelined_b_errors.append(f"pipeline: {exc}")
                r = self.client()
                continue
            self.pipelines += 1
            for (key, value), reply in zip(items, got, strict=True):
                if isinstance(reply, Exception):
                    if key in self.b_keys:
                        self.pipelined_b_errors.append(f"{key}: {reply}")
                    else:
                        self.pipelined_a_errors += 1
                elif reply != value:
                    self.pipelined_wrong.append(f"{key}: {reply!r}, not {value!r}")
        r.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=LOAD_SECONDS + 30)
        assert not any(t.is_alive() for t in self.threads), "a load thread hung"


def test_kill_a_shard_primary_under_load(cache_stack: tuple[StackRun, dict[str, int]]) -> None:
    run, ports = cache_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for("a primary in each shard", lambda: primary_of(ports["a_api"]) is not None
             and primary_of(ports["b_api"]) is not None, timeout=30)  # fmt: skip
    wait_for("cache-b's replica streaming", lambda: any(
        streaming_replica(ports["b_api"] + i) for i in range(2)), timeout=30)  # fmt: skip
    old = primary_of(ports["a_api"])
    assert old is not None
    # `status` shows each member's role as its agent says it, and Redis's own pid.
    wait_for("status: cache-a's roles", lambda: roles(run, "cache-a") ==
             expected_roles(old), 30)  # fmt: skip
    shown = run.instance(f"cache-a/{old}")
    assert shown["health"] == "healthy" and shown["pid"] != shown["agent_pid"]
    assert psutil.Process(shown["pid"]).name() == "redis-server"

    ring = ShardRing(["cache-a", "cache-b"])
    r = redis.Redis(port=ports["lb"], socket_timeout=10, decode_responses=True)
    b_keys = {
        f"b:{i}": f"x{i}" for i in range(2000) if ring.shard_of(f"b:{i}".encode()) == "cache-b"
    }
    # cache-b is read from its replica: wait until the replica has every key (a read
    # from a replica that has not caught up yet sees nothing, as Redis replicas do).
    setup = redis.Redis(port=ports["lb"], socket_timeout=10, single_connection_client=True,
                        protocol=2)  # fmt: skip
    for k, v in b_keys.items():
        assert setup.set(k, v)
    assert int(setup.execute_command("WAIT", 1, 10000)) >= 1
    setup.close()
    # A multi-key command across shards is refused with a clear error.
    a_key = next(f"a:{i}" for i in range(100) if ring.shard_of(f"a:{i}".encode()) == "cache-a")
    with pytest.raises(redis.ResponseError, match="hash to the same shard"):
        r.mget(a_key, next(iter(b_keys)))

    with Load(ports["lb"], b_keys) as load:
        wait_for("writes acknowledged", lambda: len(load.acked) >= 200, timeout=30)
        victim = run.instance(f"cache-a/{old}")["agent_pid"]  # Redis dies with it
        os.kill(victim, signal.SIGKILL)
        killed_at = len(load.acked)
        wait_for("a new primary of cache-a", lambda: primary_of(ports["a_api"]) not in (None, old),
                 timeout=30)  # fmt: skip
        new = primary_of(ports["a_api"])
        # The killed member comes back (the supervisor restarts its agent) as a replica.
        wait_for("the old primary streaming from the new one",
                 lambda: streaming_replica(ports["a_api"] + old), timeout=60)  # fmt: skip
        wait_for("acknowledged writes after the failover",
                 lambda: len(load.acked) >= killed_at + 100, timeout=30)  # fmt: skip

    lost = {k: v for k, v in load.acked.items() if r.get(k) != v}
    print(
        f"acknowledged {len(load.acked)} writes, lost {len(lost)}; write errors "
        f"{len(load.write_errors)} {load.write_errors[:3]}; "
        f"cache-b reads {load.reads}, errors {len(load.read_errors)} {load.read_errors[:3]}; "
        f"pipelines {load.pipelines}, errors on cache-a {load.pipelined_a_errors}"
    )
    assert lost == {}, sorted(lost)[:10]
    assert load.read_errors == [], load.read_errors[:10]
    assert load.reads > 0
    # Pipelined: every reply is its command's (or, on cache-a, an error), none lost.
    assert load.pipelined_wrong == [], load.pipelined_wrong[:10]
    assert load.pipelined_b_errors == [], load.pipelined_b_errors[:10]
    assert load.pipelines > 0
    status = agent_status(ports["a_api"] + old)
    assert status and status["role"] == "replica" and status["leader_name"] == f"cache-a-{new}"
    wait_for("status: the roles after the failover", lambda: roles(run, "cache-a") ==
             expected_roles(new), 30)  # fmt: skip


@pytest.mark.parametrize("cache_stack", [", min_replicas_to_write: 1"], indirect=True)
def test_a_frozen_primary_agent_cannot_take_writes(
    cache_stack: tuple[StackRun, dict[str, int]],
) -> None:
    """SIGSTOP of the primary's agent: it can neither renew its lease nor fence its Redis,
    which keeps running. With `min_replicas_to_write: 1` that Redis refuses writes as soon
    as the promoted replica stops replicating from it; the load balancer sends writes to
    the new primary; once woken, the old primary follows the new one."""
    run, ports = cache_stack
    up = run.cli("up", "--detach", "--wait", "--timeout", "120", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for("a primary of cache-a", lambda: primary_of(ports["a_api"]) is not None, timeout=30)
    old = primary_of(ports["a_api"])
    assert old is not None
    others = [i for i in range(3) if i != old]
    api = ports["a_api"]
    wait_for("cache-a's replicas", lambda: all(streaming_replica(api + i) for i in others), 30)
    ring = ShardRing(["cache-a", "cache-b"])
    key = next(f"k:{i}" for i in range(100) if ring.shard_of(f"k:{i}".encode()) == "cache-a")
    lb = redis.Redis(port=ports["lb"], socket_timeout=20, decode_responses=True, protocol=2)
    assert lb.set(key, "before")
    agent = run.instance(f"cache-a/{old}")["agent_pid"]
    os.kill(agent, signal.SIGSTOP)
    try:
        # The frozen agent's API does not answer; one of the others is promoted, and the
        # third replicates from it (min_replicas_to_write: 1 is met again).
        wait_for("a replica promoted", lambda: primary_of(ports["a_api"]) not in (None, old),
                 timeout=30)  # fmt: skip
        direct = redis.Redis(port=ports["a"] + old, socket_timeout=5, protocol=2)
        with pytest.raises(redis.ResponseError, match=r"(?i)replicas"):
            direct.set(key, "split brain")
        direct.close()
        assert lb.set(key, "after")
        assert lb.get(key) == "after"
    finally:
        os.kill(agent, signal.SIGCONT)
    wait_for("the old primary streaming from the new one",
             lambda: streaming_replica(ports["a_api"] + old), timeout=60)  # fmt: skip
    assert lb.get(key) == "after"
