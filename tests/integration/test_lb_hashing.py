"""Consistent hashing keeps every key whose backend stays when another one leaves."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from lb_fixtures import (
    backend_state,
    get,
    processes,
    start_backend,
    start_lb,
)
from waiting import wait_for

pytestmark = pytest.mark.integration

KEYS = 40
Ask = Callable[[int, int], bytes]  # (lb port, key number) -> the backend's name


def _by_source(lb: int, k: int) -> bytes:
    return get(lb, source=f"127.0.{k // 200}.{k % 200 + 10}")[1]  # any 127/8 address is ours


def _by_header(lb: int, k: int) -> bytes:
    return get(lb, headers={"X-User": f"user-{k}"})[1]


def _by_cookie(lb: int, k: int) -> bytes:
    return get(lb, headers={"Cookie": f"theme=dark; sid=s{k}; x=1"})[1]


def _by_path(lb: int, k: int) -> bytes:
    return get(lb, f"/items/{k}?page={k % 3}")[1]  # the query is not part of the key


@pytest.mark.parametrize(
    ("hash_key", "ask"),
    [
        ("source", _by_source),
        ("header:x-user", _by_header),
        ("cookie:sid", _by_cookie),
        ("path", _by_path),
    ],
)
def test_keys_stay_when_a_node_leaves(hash_key: str, ask: Ask, tmp_path: Path) -> None:
    with processes() as procs:
        ports = [start_backend(procs, f"b{i}") for i in range(3)]
        lb, admin = start_lb(
            procs, ports, "--algorithm", "hash", "--hash-key", hash_key, log=tmp_path / "lb.log"
        )
        for p in ports:
            wait_for(
                f"{p} up", lambda p=p: backend_state(admin, p)["status"] == "up", 10, step=0.01
            )
        before = {k: ask(lb, k) for k in range(KEYS)}
        again = {k: ask(lb, k) for k in range(KEYS)}
        gone = before[0]
        index = int(gone[1:])
        procs[index].send_signal(signal.SIGKILL)
        wait_for(
            f"{gone!r} down",
            lambda: backend_state(admin, ports[index])["status"] == "down",
            3,
            step=0.01,
        )
        after = {k: ask(lb, k) for k in range(KEYS)}
    assert again == before  # stable
    assert len(set(before.values())) == 3  # spread over every node
    for k in range(KEYS):
        if before[k] != gone:
            assert after[k] == before[k], k
        else:
            assert after[k] not in (gone, b"")
