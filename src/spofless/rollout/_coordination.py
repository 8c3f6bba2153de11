"""Where a rollout takes its lock, keeps its record and has instances replaced.

    coordination_for(topology, state_dir) -> Coordination
    ├── EtcdCoordination   the topology has etcd: every supervisor, on any machine
    │                      (spofless.rollout._etcd; rules: spofless.stack._coord)
    └── LocalCoordination  no etcd: the one supervisor of the state dir
                           <state_dir>/rollout.lock  flock held by the running rollout
                           <state_dir>/rollout.json  its record
                           <state_dir>/control.sock  the supervisor replaces instances

The rollout (spofless.rollout.run) is written once against `Coordination`; the
two differ only in where things are. In both, a second rollout refuses to start
while one runs, and what a rollout that died left drained goes back in rotation:
with etcd, at once, by the supervisors (its lock expires with its lease); on one
machine, by the next rollout or `--abort`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from spofless.rollout._errors import RolloutError
from spofless.stack._control import request
from spofless.stack._coord import (
    RolloutRecord,
)
from spofless.stack._errors import StackError
from spofless.stack._rollout_agent import coordination_store, readmit, unsurge_lbs
from spofless.stack._state import FileLock, lock_held, read_state_quiet, supervisor_alive
from spofless.topology import Topology

__all__ = ["Coordination", "LocalCoordination", "coordination_for"]

POLL = 0.1
Say = Callable[[str], None]


class Coordination(abc.ABC):
    """The lock, the record and the supervisors of one system's rollouts."""

    topology: Topology

    @abc.abstractmethod
    async def instances(self, strict: bool = True) -> list[dict[str, Any]]:
        """Every running instance's entry (as in a state file), from every live supervisor.
        RolloutError when no supervisor runs (`strict`; else an empty list: a wait
        rides out a moment without) or etcd does not answer."""

    async def not_running(self, component: str) -> str | None:
        """Why `component` has instances no live supervisor runs; None when all run."""
        return None

    @abc.abstractmethod
    async def begin(self, record: RolloutRecord, say: Say) -> None:
        """Take the lock (RolloutError naming the holder when another rollout runs), put
        back what a dead rollout left drained, write `record`."""

    @abc.abstractmethod
    async def save(self, record: RolloutRecord) -> None:
        """Write the record (RolloutError when this rollout no longer holds the lock)."""

    @abc.abstractmethod
    async def end(self, record: RolloutRecord) -> None:
        """Write the final record and release the lock."""

    @abc.abstractmethod
    async def replace(
        self, name: str, argv: tuple[str, ...] | None, bound: float, run: str | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """Have the supervisor running `name` replace it, running `argv` (None: as now;
        `run`: the command before its placeholders were expanded, for a supervisor with
        another state dir); its new pid and the command it ran before. StackError or
        RolloutError when it refuses or does not answer within `bound`."""

    @abc.abstractmethod
    async def surge(
        self, name: str, host: str | None, run: str | None, bound: float
    ) -> tuple[int, str]:
        """Have the supervisor running `host` start temporary instance `name` (running
        `run`, None: the component's command) for this rollout; its pid and address.
        StackError or RolloutError when it refuses or does not answer within `bound`."""

    @abc.abstractmethod
    async def unsurge(self, name: str, bound: float) -> None:
        """Have its supervisor remove temporary instance `name` (out of the load
        balancers, drained first, then stopped). Errors as `surge`."""

    def on_stop(self, stop: Callable[[str], None]) -> None:  # noqa: B027 (optional)
        """Call `stop(why)` when the rollout must stop (its lock lost, `--abort`)."""

    @abc.abstractmethod
    async def status(self) -> str:
        """One line: where the last or running rollout is."""

    @abc.abstractmethod
    async def abort(self, say: Say) -> None:
        """Stop the running rollout (it readmits what it drained) or put back what a dead
        one left drained."""

    async def close(self) -> None:  # noqa: B027 (optional)
        """Release what the coordination holds open."""


def coordination_for(topology: Topology, state_dir: Path, lab: bool = False) -> Coordination:
    """Through etcd when the topology has one, else through the state dir. A stack run
    in a lab (`up --lab`: one supervisor, etcd on the lab's addresses) keeps the state
    dir's: its etcd is not reachable from where the rollout runs."""
    from spofless.rollout._etcd import EtcdCoordination

    store = None if lab else coordination_store(topology)
    if store is None:
        return LocalCoordination(topology, state_dir)
    return EtcdCoordination(topology, store)


# -- one machine --------------------------------------------------------------------------


class LocalCoordination(Coordination):
    def __init__(self, topology: Topology, state_dir: Path) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self._lock = FileLock(state_dir / "rollout.lock")
        self._record_path = state_dir / "rollout.json"

    def _read(self) -> RolloutRecord | None:
        try:
            return RolloutRecord.from_json(self._record_path.read_text())
        except OSError:
            return None

    def _write(self, record: RolloutRecord) -> None:
        tmp = self._record_path.with_suffix(".tmp")
        tmp.write_text(record.to_json())
        os.replace(tmp, self._record_path)

    async def instances(self, strict: bool = True) -> list[dict[str, Any]]:
        state = read_state_quiet(self.state_dir)
        if state is None or (strict and not supervisor_alive(self.state_dir)):
            raise RolloutError(
                f"nothing runs from {self.state_dir}: start it with `spofless up` first"
            )
        return list(state.get("instances", []))

    async def not_running(self, component: str) -> str | None:
        state = read_state_quiet(self.state_dir) or {}
        if any(i.get("component") == component for i in state.get("instances", [])):
            return None
        skipped = [s["reason"] for s in state.get("skipped", []) if s["component"] == component]
        why = f" ({skipped[0]})" if skipped else ""
        return f"{component} does not run here{why}: nothing to roll out"

    async def begin(self, record: RolloutRecord, say: Say) -> None:
        if not self._lock.acquire():
            running = self._read()
            what = running.describe(True) if running else "another rollout"
            raise RolloutError(
                f"a rollout already runs here: {what}; wait for it, or stop it with --abort"
            )
        try:
            await self._heal(say)
            self._write(record)
        except BaseException:
            self._lock.release()
            raise

    async def _heal(self, say: Say) -> list[str]:
        previous = self._read()
        if previous is None or previous.finished or not (previous.drained or previous.surge):
            return []
        async with httpx.AsyncClient(timeout=2.0) as client:
            missed = await readmit(self.topology, previous, client)
            # Its supervisor removes them from the load balancers too; this is for when
            # that supervisor was restarted since (its new self does not know them).
            await unsurge_lbs(self.topology, previous, client)
        for name, lbs in missed.items():
            say(
                f"{name}: left drained by rollout pid {previous.pid}; back in rotation"
                + (f" (not on {', '.join(lbs)}: they did not answer)" if lbs else "")
            )
        for name in previous.surge:
            # Its supervisor removes it once the lock is free; the lock is ours now.
            try:
                await self.unsurge(name, 90.0)
                say(f"{name}: temporary instance of rollout pid {previous.pid}; removed")
            except StackError as exc:
                say(f"{name}: temporary instance of rollout pid {previous.pid}: {exc}")
        healed = [*previous.drained, *previous.surge]
        previous.drained, previous.surge, previous.phase = [], [], "aborted"
        self._write(previous)
        return healed

    async def save(self, record: RolloutRecord) -> None:
        self._write(record)

    async def end(self, record: RolloutRecord) -> None:
        self._write(record)
        self._lock.release()

    async def replace(
        self, name: str, argv: tuple[str, ...] | None, bound: float, run: str | None = None
    ) -> tuple[int, tuple[str, ...]]:
        req = {"op": "replace", "instance": name, "argv": None if argv is None else list(argv)}
        answer = await request(self.state_dir, req, bound)
        return int(answer["pid"]), tuple(answer["previous_argv"])

    async def surge(
        self, name: str, host: str | None, run: str | None, bound: float
    ) -> tuple[int, str]:
        req = {"op": "surge", "instance": name, "host": host, "run": run}
        answer = await request(self.state_dir, req, bound)
        return int(answer["pid"]), str(answer["address"])

    async def unsurge(self, name: str, bound: float) -> None:
        await request(self.state_dir, {"op": "unsurge", "instance": name}, bound)

    def _held(self) -> bool:
        return lock_held(self.state_dir / "rollout.lock")

    async def status(self) -> str:
        record = self._read()
        return record.describe(self._held()) if record else "no rollout has run here"

    async def abort(self, say: Say) -> None:
        record = self._read()
        running = self._held()
        if running and record is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while self._held():
                if time.monotonic() > deadline:
                    raise RolloutError(f"rollout pid {record.pid} did not stop within 60 s")
                await asyncio.sleep(POLL)
            say(f"rollout pid {record.pid} stopped")
        if not await self._heal(say) and not running:
            say("no rollout runs here and none left an instance drained")
