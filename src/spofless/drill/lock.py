"""One drill at a time on a system: two would mix their faults and their figures.

    DrillLock(state_dir, plan, etcd=...)   `with` it around a drill; DrillError (exit 2)
                                           naming the running drill when one holds it

- On this machine: an exclusive flock on `<state dir>/drill.lock` (spofless.stack's
  FileLock), the file holding the holder's pid, then its start, plan and host as JSON.
  The kernel drops it with the process, however it ends (kill -9 included): a lock is
  never left behind.
- Across machines (drills run from several machines on one system): when the stack
  runs an etcd, the key `/spofless/<topology>/drill` too, created only if absent, on a
  lease of LEASE_TTL seconds kept alive by a thread and revoked at the end. A drill
  killed outright leaves the key until its lease expires; a drill whose faults stop
  etcd for longer than LEASE_TTL may lose it (the file lock still holds on its
  machine). etcd not answering when the drill starts: DrillError, nothing done.

The lock is taken before anything else, the journal's take-back included: a second
drill must not resume what the running one paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spofless.dcs import Compare, DCSError, DCSSettings, EtcdStore, EtcdTls, Put
from spofless.drill.errors import DrillError
from spofless.drill.system import System
from spofless.stack._state import FileLock

logger = logging.getLogger(__name__)

LEASE_TTL = 30  # seconds; a drill's etcd faults (a leader paused 8 s) stay well below
ETCD_BOUND = 5.0  # seconds to take or read the etcd key


def lock_path(state_dir: Path) -> Path:
    return state_dir / "drill.lock"


def holder_text(info: dict[str, Any]) -> str:
    """`pid 4242 on host a, started 2026-12-05 04:30:01 UTC (scenario:primary-crash)`."""
    started = info.get("started_at")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, int | float)
        else "at an unknown time"
    )
    return (
        f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {when} "
        f"({info.get('plan', '?')})"
    )


def drill_lock(system: System, plan: str) -> DrillLock:
    """The lock of `system`'s drills: its state dir's, and its etcd's when it runs one."""
    from spofless.security import etcd_client_tls
    from spofless.topology import etcd_client_urls

    topology = system.running
    running = {d["component"] for d in system.document()["instances"]}
    etcds = sorted(n for n, c in topology.components.items() if c.kind == "etcd" and n in running)
    if not etcds:
        return DrillLock(system.plan.state_dir, plan)
    return DrillLock(
        system.plan.state_dir,
        plan,
        key=f"/spofless/{topology.name}/drill",
        endpoints=etcd_client_urls(topology, etcds[0]),
        tls=etcd_client_tls(topology),
    )


class DrillLock:
    """Held for the whole drill (see module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        plan: str,
        *,
        key: str | None = None,
        endpoints: Sequence[str] = (),
        tls: EtcdTls | None = None,
    ) -> None:
        self.path = lock_path(state_dir)
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": round(time.time(), 3),
            "plan": plan,
        }
        self._file = FileLock(self.path)
        self._key = key if endpoints else None
        self._endpoints = list(endpoints)
        self._tls = tls
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DrillLock:
        if not self._file.acquire(json.dumps(self.info)):
            raise DrillError(
                f"another drill runs on this system: {self._file_holder()}; wait for it to "
                f"end (lock {self.path})"
            )
        if self._key is not None:
            try:
                self._take_etcd()
            except BaseException:
                self._file.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(ETCD_BOUND + 5)
        self._file.release()

    def _file_holder(self) -> str:
        try:
            pid, _, rest = self.path.read_text().partition("\n")
            info = json.loads(rest) if rest.strip() else {"pid": pid.strip()}
        except (OSError, ValueError):
            return "a process holding the lock"
        return holder_text(info)

    # -- etcd --------------------------------------------------------------------------

    def _store(self) -> EtcdStore:
        return EtcdStore(self._endpoints, DCSSettings(tls=self._tls))

    def _take_etcd(self) -> None:
        taken = threading.Event()
        failure: list[str] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._hold(taken, failure)), name="drill-lock", daemon=True
        )
        self._thread.start()
        taken.wait(ETCD_BOUND * 3)  # set once it was taken or refused
        if failure or not taken.is_set():
            self._stop.set()
            raise DrillError(failure[0] if failure else f"no answer from etcd about {self._key}")

    async def _hold(self, taken: threading.Event, failure: list[str]) -> None:
        assert self._key is not None
        key = self._key
        store = self._store()
        lease = None
        try:
            try:
                async with asyncio.timeout(ETCD_BOUND):
                    lease = await store.grant_lease(LEASE_TTL)
                    res = await store.txn(
                        [Compare.create_revision(key, "==", 0)],
                        [Put(key, json.dumps(self.info), lease=lease.id)],
                    )
                    if not res.succeeded:
                        kv = await store.get(key)
                        info = json.loads(kv.value) if kv is not None else {}
                        failure.append(
                            f"another drill runs on this system: {holder_text(info)} "
                            f"(etcd key {key}); wait for it to end"
                        )
                        return
            except (DCSError, TimeoutError, ValueError) as exc:
                failure.append(f"cannot take the drill lock {key} in etcd: {exc}")
                return
            finally:
                taken.set()
            while not self._stop.wait(LEASE_TTL / 6):
                try:
                    async with asyncio.timeout(ETCD_BOUND):
                        await store.keepalive(lease.id)
                except (DCSError, TimeoutError) as exc:  # etcd faulted by the drill itself
                    logger.warning("drill lock %s: keepalive failed: %s", key, exc)
        finally:
            if lease is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(ETCD_BOUND):
                        await store.revoke_lease(lease.id)
            await store.close()
