"""Running a plan against the system `spofless up` started, and measuring it.

    run_drill(system, plan, on_progress) -> DrillResult

0. One drill at a time: the system's drill lock (lock.py), else DrillError naming
   the drill that runs.
1. Before: the steady state must hold (every instance up, the roles complete, the
   scenario's `min_primaries`), else DrillError naming what does not, and nothing is
   done. A lab fault outside the lab is refused the same way.
2. Traffic starts (and the SQL table, `CREATE TABLE IF NOT EXISTS`), then a status
   watch (a snapshot of `spofless status` every 0.1 s, for time to detect and to
   recover and for `when:` events).
3. The phases run in order (see plans.py); faults fire at their time or on their
   event; a fault held `for:` a while is taken back then; `abort:` stops the drill
   when clients fail that much for that long.
4. Whatever ends the drill (its end, an abort, Ctrl-C or SIGTERM, an error), every
   fault still in place is taken back, in the reverse order; SIGINT and SIGTERM are
   held back while a fault is applied or undone, so that none is left half done. A
   drill killed outright (SIGKILL) leaves its faults in the journal (journal.py): the
   next drill takes them back before anything else.
5. After: the system must be whole again within the steady state's `within`; the
   SQL writes are checked (datacheck.py: every member caught up, then the set checker).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from spofless.drill.checker import DataVerdict
from spofless.drill.datacheck import check_writes
from spofless.drill.errors import DrillError
from spofless.drill.faults import Applied, apply_fault, describe
from spofless.drill.journal import Journal, take_back
from spofless.drill.lock import drill_lock
from spofless.drill.measure import Outcome, Seen, Snapshot, error_rate_over
from spofless.drill.plans import Phase, Plan
from spofless.drill.signals import Interrupted, held_signals, signals_as_interrupt
from spofless.drill.system import (
    StatusWatch,
    System,
    redundancy_problems,
    steady_state_problems,
)
from spofless.drill.traffic import SqlStream, Stream, make_streams
from spofless.errors import SpoflessError
from spofless.topology._drills import PROCESS_ACTIONS, FaultSpec

logger = logging.getLogger(__name__)

TICK = 0.05  # seconds between two looks at the clock, the events and the abort rule
START_BOUND = 10.0  # seconds for the traffic to succeed once before the first fault
# Seconds the steady state may take to show in status before the drill refuses: one
# status look of a role can miss (an etcd member slow to answer the supervisor).
STEADY_BOUND = 3.0


@dataclass
class FaultRecord:
    index: int
    phase: str
    description: str
    action: str
    at: float  # seconds since the drill started
    end: float | None = None  # when it was taken back (None: a fault with no undo)
    targets: list[str] = field(default_factory=list)
    note: str = ""
    error: str = ""  # it could not be applied (e.g. no instance in that role)
    element: str | None = None  # analysis plan
    predicted: str | None = None
    when: str | None = None  # fired on this event (`when:`)
    seen_at: float | None = None  # when the drill saw that event
    seen: str = ""  # what showed it (`db/1 lags 2.0 MB`)


@dataclass
class PhaseRecord:
    phase: Phase
    start: float
    end: float = 0.0
    settled_in: float | None = None  # seconds to full redundancy after the phase


@dataclass
class DrillResult:
    plan: Plan
    started_at: float  # wall clock
    duration: float
    streams: list[Stream]
    faults: list[FaultRecord]
    phases: list[PhaseRecord]
    snapshots: list[Snapshot]
    aborted: str = ""  # why, when the drill was stopped early
    interrupted: bool = False  # by Ctrl-C or SIGTERM
    taken_back: list[str] = field(default_factory=list)  # left by a drill killed outright
    after_problems: list[str] = field(default_factory=list)  # not whole at the end
    recovered_in: float | None = None  # seconds after the last phase until whole
    data: DataVerdict | None = None
    acked_at: dict[int, float] = field(default_factory=dict)  # sql id -> ack time
    data_note: str = ""
    events: list[tuple[float, Seen]] = field(default_factory=list)  # every event seen

    def outcomes(self) -> dict[str, list[Outcome]]:
        return {s.name: s.outcomes() for s in self.streams}


@dataclass
class Progress:
    """What the live view shows."""

    elapsed: float
    phase: str
    phase_index: int
    phases: int
    active: list[str]
    streams: list[tuple[str, int, int, float]]  # name, requests, errors, recent success rate
    last_event: str


class _Aborted(Exception):
    pass


def run_drill(
    system: System,
    plan: Plan,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    ids_from: int | None = None,
) -> DrillResult:
    """Run `plan` (see module docstring); DrillError before anything is done when it
    cannot run, or when another drill runs on this system (lock.py)."""
    with drill_lock(system, plan.kind):
        return _run_drill(system, plan, on_progress, ids_from)


def _run_drill(
    system: System,
    plan: Plan,
    on_progress: Callable[[Progress], None] | None,
    ids_from: int | None,
) -> DrillResult:
    journal = Journal(system.plan.state_dir)
    left = take_back(journal, system.lab)
    if left:
        # What an earlier drill killed outright left in place is taken back first; the
        # steady state is then judged on the healed system.
        _settle(system, plan.steady_state.within)
    _refuse(system, plan)
    t0 = time.monotonic()
    started_at = time.time()
    # Each drill's ids in a range of its own (a second of start time, 10**9 ids; each
    # stream 10**8 of them), so the checker sees this drill's rows only.
    first_id = ids_from if ids_from is not None else int(started_at) * 10**9
    streams = make_streams(system.running, plan.traffic, t0, first_id)
    _prepare_tables(streams)
    events: list[tuple[float, Seen]] = []
    events_lock = threading.Lock()

    def on_events(at: float, found: list[Seen]) -> None:
        with events_lock:
            events.extend((at, e) for e in found)

    faults: list[FaultRecord] = []
    phases: list[PhaseRecord] = []
    applied: list[tuple[Applied, FaultRecord]] = []
    result = DrillResult(
        plan, started_at, 0.0, streams, faults, phases, [], taken_back=left, events=events
    )
    triggers = [t for p in plan.phases for f in p.faults if (t := f.trigger) is not None]
    with signals_as_interrupt(), StatusWatch(system, t0, on_events, triggers) as watch:
        for s in streams:
            s.start()
        try:
            _wait_first_success(streams, t0)
            for n, phase in enumerate(plan.phases):
                record = PhaseRecord(phase, time.monotonic() - t0)
                phases.append(record)
                _run_phase(
                    system,
                    journal,
                    plan,
                    phase,
                    n,
                    t0,
                    streams,
                    faults,
                    applied,
                    events,
                    events_lock,
                    on_progress,
                )
                _undo_all(applied, t0)
                record.end = time.monotonic() - t0
                if phase.settle:
                    record.settled_in = _settle(system, plan.steady_state.within)
                    if record.settled_in is None and n + 1 < len(plan.phases):
                        result.aborted = (
                            f"the system was not whole again {plan.steady_state.within:g}s "
                            f"after {phase.name}: "
                            + "; ".join(redundancy_problems(_docs(system), system.running))
                        )
                        break
        except _Aborted as exc:
            result.aborted = str(exc)
        except (KeyboardInterrupt, Interrupted):
            _interrupted(result, "")
        finally:
            try:
                _undo_all(applied, t0)
            except (KeyboardInterrupt, Interrupted):  # held while undoing, delivered after
                _interrupted(result, "")
            try:
                # Traffic goes on while the system heals: the recovery is what clients see.
                _after(system, plan, result)
            except (KeyboardInterrupt, Interrupted):
                _interrupted(result, "while waiting for the system to be whole again")
                result.recovered_in = None
                result.after_problems = ["not known: interrupted before it was whole again"]
            finally:
                for s in streams:
                    s.stop()
    # After the watch ended: its last snapshot, taken then, may be the first whole one.
    result.snapshots = watch.all()
    result.duration = round(time.monotonic() - t0, 3)
    try:
        check_writes(system, result, streams, first_id)
    except (KeyboardInterrupt, Interrupted):
        _interrupted(result, "while checking the data")
        result.data_note = "data not checked: interrupted"
    return result


def _refuse(system: System, plan: Plan) -> None:
    ss = plan.steady_state
    deadline = time.monotonic() + STEADY_BOUND
    while True:
        docs = _docs(system)
        problems = steady_state_problems(
            docs, system.running, all_up=ss.all_up, min_primaries=ss.min_primaries
        )
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if problems:
        raise DrillError(
            "the steady state does not hold, so the drill does not start:\n  "
            + "\n  ".join(problems)
        )
    for p in plan.phases:
        for f in p.faults:
            problem = _not_run(f, docs)
            if problem:
                raise DrillError(f"{describe(f)}: {problem}; nothing was done")
    if system.lab is None:
        lab_only = [describe(f) for p in plan.phases for f in p.faults if f.lab_only]
        if lab_only:
            raise DrillError(
                f"{', '.join(lab_only)}: network faults need the lab; this stack runs on the "
                f"machine's own network (start it with `spofless up {system.topology.source} "
                "--lab`)"
            )


def _not_run(spec: FaultSpec, docs: list[dict[str, Any]]) -> str:
    """Why a process fault can never hit anything this stack runs ("" when it can)."""
    if spec.action not in PROCESS_ACTIONS:
        return ""
    target = str(spec.target)
    if target.startswith("host:"):
        host = target.removeprefix("host:")
        return "" if any(d["host"] == host for d in docs) else f"this stack runs nothing on {host}"
    if "/" in target:
        return "" if any(d["name"] == target for d in docs) else f"this stack does not run {target}"
    if any(d["component"] == target for d in docs):
        return ""
    return f"this stack runs no instance of {target}"


def _docs(system: System) -> list[dict[str, Any]]:
    return list(system.document()["instances"])


def _prepare_tables(streams: list[Stream]) -> None:
    for s in streams:
        if isinstance(s, SqlStream):
            try:
                with psycopg.connect(s.conninfo, autocommit=True) as conn:
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {s.table} (id bigint PRIMARY KEY)")
            except psycopg.Error as exc:
                raise DrillError(f"{s.name}: cannot create table {s.table}: {exc}") from None


def _wait_first_success(streams: list[Stream], t0: float) -> None:
    deadline = time.monotonic() + START_BOUND
    while True:
        missing = [s.name for s in streams if not any(o.ok for o in s.outcomes())]
        if not missing:
            return
        if time.monotonic() > deadline:
            details = []
            for s in streams:
                if s.name in missing:
                    last = s.outcomes()[-1].detail if s.outcomes() else "no request finished"
                    details.append(f"{s.name}: {last}")
            raise _Aborted(
                f"the traffic did not succeed once within {START_BOUND:g}s, before any fault: "
                + "; ".join(details)
            )
        time.sleep(TICK)


def _run_phase(
    system: System,
    journal: Journal,
    plan: Plan,
    phase: Phase,
    n: int,
    t0: float,
    streams: list[Stream],
    faults: list[FaultRecord],
    applied: list[tuple[Applied, FaultRecord]],
    events: list[tuple[float, Seen]],
    events_lock: threading.Lock,
    on_progress: Callable[[Progress], None] | None,
) -> None:
    rng = random.Random(phase.seed)
    start = time.monotonic() - t0
    timed = sorted((f for f in phase.faults if f.at is not None), key=lambda f: f.at or 0.0)
    triggered = [f for f in phase.faults if f.when is not None]
    fired_events: set[int] = set()
    undo_at: dict[int, float] = {}  # id(Applied) -> when to take it back
    last_event = ""
    next_progress = 0.0
    while True:
        now = time.monotonic() - t0
        if now - start >= phase.duration:
            return
        while timed and start + (timed[0].at or 0.0) <= now:
            spec = timed.pop(0)
            _fire(system, journal, spec, rng, phase, now, t0, faults, applied, undo_at)
        with events_lock:
            new = [(at, e) for at, e in events if at >= start]
        for i, spec in enumerate(triggered):
            if i in fired_events:
                continue
            trigger = spec.trigger
            assert trigger is not None
            key = trigger.key
            hit = next(((at, e) for at, e in new if e.key == key), None)
            if hit is not None:
                fired_events.add(i)
                last_event = f"{spec.when} at {hit[0]:.1f}s: {hit[1].detail}"
                logger.info("event %s at %.1fs (%s)", spec.when, hit[0], hit[1].detail)
                _fire(system, journal, spec, rng, phase, now, t0, faults, applied, undo_at, hit)
        for a, rec in applied:
            due = undo_at.get(id(a))
            if a.needs_undo and a.over is not None and a.over():
                due = now  # over by itself: its end is now
            if due is not None and now >= due and a.needs_undo:
                with held_signals():
                    a.undo()
                rec.end = round(time.monotonic() - t0, 4)
                rec.note = a.note or rec.note
        if plan.abort is not None and faults:
            first = min(f.at for f in faults)
            if now - first >= plan.abort.for_:
                for s in streams:
                    rate, count = error_rate_over(s.outcomes(), now, plan.abort.for_)
                    if count and rate >= plan.abort.error_rate:
                        raise _Aborted(
                            f"abort: {s.name} failed {rate:.0%} of {count} requests over the "
                            f"last {plan.abort.for_:g}s (abort at {plan.abort.error_rate:.0%})"
                        )
        if on_progress is not None and now >= next_progress:
            next_progress = now + 0.25
            on_progress(_progress(now, phase, n, len(plan.phases), applied, streams, last_event))
        time.sleep(TICK)


def _fire(
    system: System,
    journal: Journal,
    spec: Any,
    rng: random.Random,
    phase: Phase,
    now: float,
    t0: float,
    faults: list[FaultRecord],
    applied: list[tuple[Applied, FaultRecord]],
    undo_at: dict[int, float],
    seen: tuple[float, Seen] | None = None,
) -> None:
    rec = FaultRecord(
        len(faults),
        phase.name,
        describe(spec),
        spec.action,
        round(now, 4),
        element=phase.element,
        predicted=phase.predicted,
        when=spec.when,
        seen_at=seen[0] if seen else None,
        seen=seen[1].detail if seen else "",
    )
    faults.append(rec)
    try:
        with held_signals():
            a = apply_fault(spec, system, rng, journal)
            applied.append((a, rec))
    except SpoflessError as exc:  # no instance in that role now, a lab that refused, ...
        rec.error = str(exc)
        logger.warning("not applied: %s", exc)
        return
    rec.at = round(time.monotonic() - t0, 4)
    rec.targets = list(a.targets)
    rec.note = a.note
    if spec.for_ is not None:
        undo_at[id(a)] = rec.at + spec.for_
    if not a.needs_undo:
        rec.end = rec.at


def _undo_all(applied: list[tuple[Applied, FaultRecord]], t0: float) -> None:
    """Take back every fault still in place, newest first; Ctrl-C waits until all are."""
    with held_signals():
        for a, rec in reversed(applied):
            if a.needs_undo:
                try:
                    a.undo()
                    rec.note = a.note or rec.note
                except Exception as exc:  # the others must still be taken back
                    logger.error("could not take back %s: %s", a.description, exc)
                    rec.note = (rec.note + f"; undo failed: {exc}").strip("; ")
                rec.end = round(time.monotonic() - t0, 4)


def _interrupted(result: DrillResult, when: str) -> None:
    result.interrupted = True
    if not result.aborted:
        result.aborted = "interrupted (Ctrl-C or SIGTERM)" + (f" {when}" if when else "")
        result.aborted += "; every fault was taken back"


def _after(system: System, plan: Plan, result: DrillResult) -> None:
    """Whether, and how fast, the system is whole again after the drill."""
    result.recovered_in = _settle(system, plan.steady_state.within)
    if result.recovered_in is None:
        result.after_problems = redundancy_problems(_docs(system), system.running)


def _settle(system: System, within: float) -> float | None:
    """Seconds until the system is whole again, or None when it is not within `within`."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if not redundancy_problems(_docs(system), system.running):
                return round(time.monotonic() - start, 3)
        if time.monotonic() - start > within:
            return None
        time.sleep(0.2)


def _progress(
    now: float,
    phase: Phase,
    n: int,
    total: int,
    applied: list[tuple[Applied, FaultRecord]],
    streams: list[Stream],
    last_event: str,
) -> Progress:
    rows = []
    for s in streams:
        outs = s.outcomes()
        errors = sum(1 for o in outs if not o.ok)
        rate, count = error_rate_over(outs, now, 2.0)
        rows.append((s.name, len(outs), errors, 1.0 - rate if count else 1.0))
    active = [a.description for a, _ in applied if a.needs_undo]
    return Progress(now, phase.name, n, total, active, rows, last_event)
