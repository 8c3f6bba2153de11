"""The running system as a drill sees it: what `spofless status` reports, read the same way.

- `System.open(topology, state_dir)`: the stack `spofless up` started from that
  state dir (and its lab, if it runs in one); StackError/DrillError when nothing runs.
- `snapshot()`: every instance's state, role, pid and restarts, and whether the
  system is whole (full redundancy, `whole`).
- `StatusWatch`: a thread taking a snapshot every 0.1 s, for time to detect and
  recover and for `when:` events (measure.EventTracker; with observe.Observer for
  the events status does not show).
- `steady_state_problems`: what keeps the steady state from holding, naming the
  instance.
- `process_tree`: the pids of an instance's whole process tree (its supervised
  process, what runs in its process group, and their descendants), for signals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from spofless.drill.errors import DrillError
from spofless.drill.measure import EventTracker, InstanceView, Seen, Snapshot
from spofless.drill.observe import Facts, Observer, needs_observer
from spofless.lab import Lab
from spofless.stack import StackPlan, running_plan, status
from spofless.topology import Topology
from spofless.topology._drills import Trigger

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 0.1  # seconds between two status snapshots


@dataclass
class System:
    topology: Topology  # as the file says (the lab's addresses are in plan.topology)
    plan: StackPlan
    lab: Lab | None

    @classmethod
    def open(cls, topology: Topology, state_dir: Path | None) -> System:
        from spofless.stack._lab import recorded_lab

        plan = running_plan(topology, state_dir)
        doc = status(plan)
        if not doc["supervisor"]["running"]:
            raise DrillError(
                f"nothing runs from {topology.source} (state dir {plan.state_dir}): "
                f"start it with `spofless up {topology.source} --detach --wait`"
            )
        return cls(topology, plan, recorded_lab(plan.state_dir) if plan.lab else None)

    @property
    def running(self) -> Topology:
        """The topology as it runs (in the lab: hosts at their lab addresses)."""
        return self.plan.topology

    def document(self) -> dict[str, Any]:
        return status(self.plan)

    def instances(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self.document()["instances"]}

    def snapshot(self, t0: float, facts: Facts | None = None) -> Snapshot:
        """Status now, with what the parts' own APIs said (`facts`, see observe.py)."""
        docs = self.document()["instances"]
        views = {
            d["name"]: InstanceView(
                d["state"], d.get("role"), d.get("pid"), d.get("restarts", 0), d.get("lag")
            )
            for d in docs
        }
        facts = facts or Facts()
        return Snapshot(
            round(time.monotonic() - t0, 4),
            views,
            whole(docs, self.running),
            facts.switchovers,
            facts.backends,
        )


def whole(docs: Sequence[Mapping[str, Any]], topology: Topology) -> bool:
    """Full redundancy: every instance up, each postgres component and cache shard with one
    primary and every other member a replica, each etcd with a leader."""
    return not redundancy_problems(docs, topology)


def redundancy_problems(docs: Sequence[Mapping[str, Any]], topology: Topology) -> list[str]:
    """What keeps the system from full redundancy, one line per instance or component."""
    out = []
    for d in docs:
        if d["state"] != "up":
            why = d.get("message") or d.get("last_exit") or ""
            out.append(f"{d['name']} is {d['state']}" + (f" ({why})" if why else ""))
    by_comp: dict[str, list[Mapping[str, Any]]] = {}
    for d in docs:
        by_comp.setdefault(d["component"], []).append(d)
    for comp, members in by_comp.items():
        kind = topology.components[comp].kind if comp in topology.components else ""
        roles = [m.get("role") for m in members]
        if kind in ("postgres", "cache"):  # a cache shard: one primary, its replicas
            if roles.count("primary") != 1:
                out.append(f"{comp} has {roles.count('primary')} primaries")
            for m in members:
                if m.get("role") not in ("primary", "replica"):
                    out.append(f"{m['name']} is not a replica (role {m.get('role')})")
        elif kind == "etcd" and roles.count("leader") != 1:
            out.append(f"{comp} has no leader")
    return out


def steady_state_problems(
    docs: Sequence[Mapping[str, Any]], topology: Topology, *, all_up: bool, min_primaries: int
) -> list[str]:
    """What keeps a drill's steady state from holding (empty: it holds)."""
    problems = []
    if all_up:
        problems += redundancy_problems(docs, topology)
    if min_primaries:
        for comp, spec in topology.components.items():
            if spec.kind != "postgres":
                continue
            primaries = [d for d in docs if d["component"] == comp and d.get("role") == "primary"]
            if len(primaries) < min_primaries:
                problems.append(
                    f"{comp} has {len(primaries)} primaries, fewer than {min_primaries}"
                )
    return list(dict.fromkeys(problems))


class StatusWatch:
    """Snapshots of the system every WATCH_INTERVAL in a thread; `on_events` gets the
    events between two snapshots (see measure.EventTracker). With `triggers` that need
    more than status (a switchover, a backend marked down), an Observer looks at the
    parts' own APIs too."""

    def __init__(
        self,
        system: System,
        t0: float,
        on_events: Callable[[float, list[Seen]], None],
        triggers: Sequence[Trigger] = (),
    ) -> None:
        self.system = system
        self.t0 = t0
        self.snapshots: list[Snapshot] = []
        self._on_events = on_events
        bounds: dict[str, list[int]] = {}
        for t in triggers:
            if t.bound is not None:
                bounds.setdefault(t.component, []).append(t.bound)
        self._events = EventTracker(bounds)
        self._observer = Observer(system.running, triggers) if needs_observer(triggers) else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)

    def __enter__(self) -> StatusWatch:
        if self._observer is not None:
            self._observer.__enter__()
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        # One last look: the drill ends as soon as it saw the system whole, maybe before
        # the thread's next snapshot did, and a recovery is read from the snapshots.
        self._take()
        if self._observer is not None:
            self._observer.__exit__()

    def latest(self) -> Snapshot | None:
        with self._lock:
            return self.snapshots[-1] if self.snapshots else None

    def all(self) -> list[Snapshot]:
        with self._lock:
            return list(self.snapshots)

    def _take(self) -> None:
        try:
            facts = self._observer.latest() if self._observer is not None else None
            snap = self.system.snapshot(self.t0, facts)
        except Exception as exc:  # a state file being replaced; the next one will do
            logger.debug("status snapshot failed: %s", exc)
            return
        with self._lock:
            self.snapshots.append(snap)
        events = self._events.update(snap)
        if events:
            self._on_events(snap.at, events)

    def _run(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            self._take()


def process_tree(doc: Mapping[str, Any], part: str = "all") -> list[int]:
    """The pids of an instance's process tree, parents first. `part` narrows a PostgreSQL
    instance to its `agent` (the agent's process only) or its `postmaster` (the server
    and its children)."""
    roots: list[int] = []
    if part == "agent":
        pid = doc.get("agent_pid")
        return [pid] if pid else []
    if part == "postmaster":
        roots = [doc["pid"]] if doc.get("pid") else []
    else:
        roots = [p for p in (doc.get("agent_pid"), doc.get("pid")) if p]
        pgid = doc.get("pgid")
        if pgid:
            roots += _group_members(pgid)
    seen: dict[int, None] = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(root)
            seen[root] = None
            for child in proc.children(recursive=True):
                seen[child.pid] = None
    return list(seen)


def _group_members(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid:
                out.append(proc.pid)
    return out
