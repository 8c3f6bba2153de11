"""The stack's view of cache instances: roles from the agent, Redis's pid, the health rule."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from spofless.cache._api import Snapshot, route
from spofless.stack._cache import CACHE_KEYS, describe, redis_pid
from spofless.stack._status import status_table


def status(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "cache-a-0",
        "role": "replica",
        "leader": False,
        "fenced": True,
        "link_up": True,
        "offset": 1234,
        "address": "127.0.0.1:6390",
        "leader_name": "cache-a-1",
        "running": True,
    }
    base.update(kw)
    return base


def test_primary_only_when_it_holds_the_lease_and_takes_writes() -> None:
    assert describe(status(role="primary", leader=True, fenced=False)).role == "primary"
    assert describe(status(role="primary", leader=True, fenced=True)).role == "primary, fenced"
    assert describe(status(role="primary", leader=False, fenced=False)).role == "primary, fenced"
    assert describe(status()).role == "replica"
    assert describe(status(link_up=False)).role == "replica, link down"
    assert describe(status(running=False, role=None)).role is None


def test_details_keep_what_the_agent_says_and_drop_what_is_malformed() -> None:
    d = describe(status())
    assert (d.offset, d.leader) == (1234, "cache-a-1")
    d = describe(status(offset="12", leader_name=3, role="sentinel"))
    assert (d.role, d.offset, d.leader) == (None, None, None)
    assert set(CACHE_KEYS) == {"agent_pid", *d.to_json()}


def snapshot(**kw: object) -> Snapshot:
    base: dict[str, object] = {
        "name": "c-0", "role": "replica", "leader": False, "fenced": True, "link_up": True,
        "offset": 0, "address": "127.0.0.1:1", "leader_name": "c-1",
    }  # fmt: skip
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_health_is_doing_the_job_not_merely_answering() -> None:
    """/health (the stack's and the monitor's check) is 200 only for the writable primary
    or a replica linked to its primary: a fenced primary or a cut-off replica is not
    called healthy because its Redis answers."""
    assert route("/health", snapshot()) == 200
    assert route("/health", snapshot(role="primary", leader=True, fenced=False)) == 200
    assert route("/health", snapshot(role="primary", leader=True, fenced=True)) == 503
    assert route("/health", snapshot(role="primary", leader=False, fenced=False)) == 503
    assert route("/health", snapshot(link_up=False)) == 503
    assert route("/health", snapshot(role=None, link_up=False)) == 503


def test_redis_pid_is_none_for_a_missing_stale_or_foreign_pid(tmp_path: Path) -> None:
    assert redis_pid(tmp_path) is None
    (tmp_path / "redis.pid").write_text(f"{os.getpid()}\n")
    assert redis_pid(tmp_path) is None  # this is python, not redis-server
    (tmp_path / "redis.pid").write_text("garbage\n")
    assert redis_pid(tmp_path) is None
    # A live process named redis-server (a copy of python under that name) is taken.
    fake = tmp_path / "redis-server"
    fake.symlink_to(sys.executable)
    with subprocess.Popen([fake, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            (tmp_path / "redis.pid").write_text(f"{proc.pid}\n")
            assert redis_pid(tmp_path) == proc.pid
        finally:
            proc.kill()


def test_table_shows_redis_and_its_agent() -> None:
    doc = {
        "host": "a", "ports": {"main": 6390, "api": 6490}, "address": "127.0.0.1:6390",
        "state": "up", "health": "healthy", "uptime": 3.0, "restarts": 0, "message": None,
        "last_exit": None, **CACHE_KEYS, "component": "cache-a", "index": 0, "pid": 21,
        "agent_pid": 20, "role": "primary", "offset": 99,
    }  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=200).print(status_table({"instances": [doc]}))
    line = next(x for x in out.getvalue().splitlines() if x.startswith("cache-a/0"))
    assert "21 (agent 20)" in line and "primary" in line and "healthy" in line


def test_full_redundancy_needs_one_primary_and_replicas_per_shard() -> None:
    """A drill's steady state (and `make demo`'s wait before its drill) counts a cache
    shard like a PostgreSQL cluster: one primary, every other member a replica."""
    from spofless.drill.system import redundancy_problems
    from spofless.topology import load_topology_text

    topology = load_topology_text(
        "name: t\nsecurity: {tls: false}\nhosts: {a: {}, b: {}}\ncomponents:\n"
        "  etcd: {kind: etcd, instances: [a], port: 2379, peer_port: 2380}\n"
        "  c: {kind: cache, instances: [a, b], port: 6390, api_port: 6490}\nentry: [c]\n"
    )

    def docs(*roles: str | None) -> list[dict[str, object]]:
        return [{"name": f"c/{i}", "component": "c", "state": "up", "role": r}
                for i, r in enumerate(roles)]  # fmt: skip

    assert redundancy_problems(docs("primary", "replica"), topology) == []
    assert redundancy_problems(docs("replica", "replica"), topology) == ["c has 0 primaries"]
    assert redundancy_problems(docs("primary", "replica, link down"), topology) == [
        "c/1 is not a replica (role replica, link down)"
    ]
