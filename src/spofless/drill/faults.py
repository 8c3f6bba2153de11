"""Faults on a running system, each with its undo.

    resolve_targets(spec, docs, rng)   the instances a process fault hits (pure)
    apply_fault(spec, system, rng)     do it; an `Applied` whose `undo()` takes it back

What each action does, and its undo:

- kill: SIGKILL of every process of each target instance's tree (an agent and its
  PostgreSQL, or `process: agent|postmaster`). Undo: nothing to take back; the
  supervisor restarts the instance (recovery is measured, not forced).
- stop: SIGTERM of each target instance's supervised process. Undo: as kill.
- pause: SIGSTOP of the whole tree, parents first (a parent never sees its child stop
  and acts on it). Undo: SIGCONT of the same pids, children first.
- resume: SIGCONT of the whole tree. Undo: nothing.
- switchover: a planned switchover of a postgres component (as `spofless pg
  switchover`), in the background, so that the drill sees it in progress (a `when:
  db.switchover` fault fires meanwhile). Undo: wait until it is over (a new primary
  leads, or the request was withdrawn after SWITCHOVER_BOUND); the new primary stays.
- cut / partition / latency / loss (the lab only, through the lab's fault code):
  cut detaches each element; a partition cuts the first group off (each element of
  it: hosts of a cut zone still see each other, separate cut hosts do not); latency
  and loss impair a zone or region link. Undo: the lab's restore of those elements.

An undo is idempotent and never raises for a process that is gone: the runner calls
every pending undo on the way out, whatever ended the drill (its end, an abort,
Ctrl-C, an error), so a drill never leaves a fault in place. A drill killed outright
cannot; its faults are in the journal (journal.py), which the next drill reads first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from spofless.drill.errors import DrillError
from spofless.drill.journal import Journal, signal_entry
from spofless.drill.system import process_tree
from spofless.topology import Topology
from spofless.topology._drills import FaultSpec

if TYPE_CHECKING:
    from spofless.lab import Lab

logger = logging.getLogger(__name__)

SWITCHOVER_BOUND = 30.0  # seconds for a switchover to be done, else it is withdrawn

_ROLE_NAMES = {
    "primary": ("primary",),
    "replica": ("replica",),
    "leader": ("leader",),
    "holder": ("vip-holder",),
}


class Running(Protocol):
    """What a fault needs of the system it breaks: its instances as `spofless status`
    documents them (`name`, `component`, `host`, `role`, `pid`, `agent_pid`, `pgid`),
    the topology as it runs, and its lab (None outside one). spofless.drill.system's
    System is one; the test suite's PostgreSQL cluster has its own (pg_nemesis.py)."""

    @property
    def running(self) -> Topology: ...

    @property
    def lab(self) -> Lab | None: ...

    def document(self) -> dict[str, Any]: ...


def describe(spec: FaultSpec) -> str:
    """`kill db (primary)`, `pause etcd (leader) for 5s`, `cut zone:eu/a`."""
    target = spec.target
    if isinstance(target, list):
        text = " | ".join(", ".join(g) if isinstance(g, list) else str(g) for g in target)
    else:
        text = str(target)
    role = f" ({spec.role})" if spec.role else ""
    part = f" [{spec.process}]" if spec.process != "all" else ""
    extra = ""
    if spec.action == "latency":
        extra = f" +{spec.ms:g}ms"
    elif spec.action == "loss":
        extra = f" {spec.pct:g}%"
    held = f" for {spec.for_:g}s" if spec.for_ else ""
    return f"{spec.action} {text}{role}{part}{extra}{held}"


def resolve_targets(
    spec: FaultSpec, docs: Sequence[Mapping[str, Any]], rng: random.Random
) -> list[str]:
    """The instance names a process fault hits, from the status documents (pure).

    DrillError when none fits now (no instance in that role, a component not running)."""
    target = str(spec.target)
    if target.startswith("host:"):
        host = target.removeprefix("host:")
        names = [d["name"] for d in docs if d["host"] == host]
        if not names:
            raise DrillError(f"{describe(spec)}: nothing of this stack runs on host {host}")
        return names
    if "/" in target:
        if not any(d["name"] == target for d in docs):
            raise DrillError(f"{describe(spec)}: {target} is not run by this stack")
        return [target]
    members = [d for d in docs if d["component"] == target]
    if not members:
        raise DrillError(f"{describe(spec)}: no instance of {target} is run by this stack")
    if spec.role is None:
        return [rng.choice(sorted(d["name"] for d in members))]
    wanted = _ROLE_NAMES[spec.role]
    holding = sorted(d["name"] for d in members if d.get("role") in wanted)
    if not holding:
        roles = ", ".join(f"{d['name']}={d.get('role')}" for d in members)
        raise DrillError(f"{describe(spec)}: no instance of {target} is {spec.role} ({roles})")
    return [rng.choice(holding)] if spec.role == "replica" else holding[:1]


@dataclass
class Applied:
    """A fault in place: what it hit and how to take it back."""

    spec: FaultSpec
    description: str
    targets: list[str]  # instance names, or lab elements
    note: str = ""
    _undo: Callable[[], None] | None = None
    undone: bool = False
    pids: list[int] = field(default_factory=list)
    # A fault that ends by itself (a switchover done): true once it has; its undo then
    # returns at once, and the runner takes that as the fault's end.
    over: Callable[[], bool] | None = None

    @property
    def needs_undo(self) -> bool:
        return self._undo is not None and not self.undone

    def undo(self) -> None:
        """Take the fault back (once; later calls do nothing)."""
        if self._undo is None or self.undone:
            return
        self.undone = True
        self._undo()
        logger.info("undone: %s", self.description)


def apply_fault(
    spec: FaultSpec, system: Running, rng: random.Random, journal: Journal | None = None
) -> Applied:
    """Apply `spec` to the running system now (see module docstring). A fault with an
    undo is written to `journal` before it is applied, struck off once taken back."""
    action = spec.action
    description = describe(spec)
    if spec.lab_only:
        return _lab_fault(spec, system, description, journal)
    if action == "switchover":
        return _switchover(spec, system, description)
    docs = system.document()["instances"]
    names = resolve_targets(spec, docs, rng)
    by_name = {d["name"]: d for d in docs}
    if action == "stop":
        pids = [p for n in names for p in _root(by_name[n])]
    else:
        pids = [p for n in names for p in process_tree(by_name[n], spec.process)]
    if not pids:
        raise DrillError(f"{description}: {', '.join(names)} has no running process")
    sig = {
        "kill": signal.SIGKILL,
        "stop": signal.SIGTERM,
        "pause": signal.SIGSTOP,
        "resume": signal.SIGCONT,
    }[action]
    key = journal.record(signal_entry(pids)) if journal and action == "pause" else None
    sent = send(pids, sig)
    logger.info("%s: %s (pids %s)", description, ", ".join(names), sent)
    applied = Applied(spec, description, names, pids=sent)
    if action == "pause":

        def resume() -> None:
            send(list(reversed(sent)), signal.SIGCONT)
            if journal and key:
                journal.clear(key)

        applied._undo = resume
    return applied


def send(pids: Sequence[int], sig: signal.Signals) -> list[int]:
    """Signal each pid that still exists; the pids signalled."""
    done = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            done.append(pid)
    return done


def _root(doc: Mapping[str, Any]) -> list[int]:
    pid = doc.get("agent_pid") or doc.get("pid")
    return [pid] if pid else []


def _switchover(spec: FaultSpec, system: Running, description: str) -> Applied:
    from spofless.pg import ops

    target = ops.target(system.running, str(spec.target))
    applied = Applied(spec, description, [str(spec.target)])
    done = threading.Event()

    def run() -> None:
        try:
            old, new = asyncio.run(ops.switchover(target, None, bound=SWITCHOVER_BOUND))
            applied.note = f"{old} -> {new}"
        except Exception as exc:  # PgOpError, etcd unreachable: said in the report
            applied.note = f"not done: {exc}"
        finally:
            done.set()

    threading.Thread(target=run, name="drill-switchover", daemon=True).start()

    def wait() -> None:
        # ops.switchover withdraws its request after its bound: the wait ends by then.
        done.wait(SWITCHOVER_BOUND + 10)

    applied._undo = wait
    applied.over = done.is_set
    return applied


def _lab_fault(
    spec: FaultSpec, system: Running, description: str, journal: Journal | None
) -> Applied:
    lab = system.lab
    if lab is None:
        raise DrillError(
            f"{description}: network faults need the lab (`spofless up FILE --lab`); "
            "this stack runs on the machine's own network"
        )
    action = spec.action
    elements: list[str]
    if action == "partition":
        assert spec.partition is not None
        elements = list(spec.partition[0])
    elif isinstance(spec.target, list):
        elements = [str(e) for e in spec.target]
    else:
        elements = [str(spec.target)]
    done: list[str] = []
    key = journal.record({"kind": "lab", "elements": elements}) if journal else None

    def undo() -> None:
        for element in done:
            with contextlib.suppress(Exception):
                lab.restore(element)
        if journal and key:
            journal.clear(key)

    try:
        for element in elements:
            if action in ("cut", "partition"):
                done.append(lab.cut(element))
            elif action == "latency":
                done.append(lab.impair(element, latency_ms=spec.ms, jitter_ms=spec.jitter_ms))
            else:
                done.append(lab.impair(element, loss_pct=spec.pct))
    except Exception:
        undo()
        raise
    logger.info("%s: %s", description, ", ".join(done))
    return Applied(spec, description, done, _undo=undo)
