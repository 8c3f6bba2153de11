"""Rollouts across machines: what the rollout driver and the supervisors share in etcd.

    /spofless/<topology>/rollout/lock              the driver's lock, on its lease
    /spofless/<topology>/rollout/record            where the rollout is (RolloutRecord)
    /spofless/<topology>/rollout/abort             `rollout --abort` asks the driver to stop
    /spofless/<topology>/rollout/requests/<inst>   "replace <inst>, running argv" (ReplaceRequest)
    /spofless/<topology>/rollout/results/<inst>    what its supervisor did (ReplaceResult)
    /spofless/<topology>/supervisors/<id>          each live supervisor's instances, on its lease

A topology with an etcd component is coordinated there (the first etcd component
in the file: `coordination_etcd`); one without runs on one machine and keeps the
state dir's lock and record (spofless.rollout). The rules, each case with what
happens:

- **One rollout at a time, across machines.** The driver takes the lock with one
  transaction (create it if absent) on its own lease. A second rollout, on any
  machine, finds the key and refuses, naming the holder (host and pid).
- **Fencing.** Every write of the driver (its record, its requests) is a
  transaction that holds only while the lock it took exists (the key's create
  revision, its token): a driver that lost its lock changes nothing more.
- **The instance is replaced by the supervisor that runs it.** The driver writes a
  request for the instance; every supervisor watches the rollout keys and carries
  out a request for an instance it runs (`Supervisor.replace`), once (a result with
  the request's id exists: done), and only while the lock that issued it is held
  (the request's token is the lock's create revision): a request left by a dead
  driver is never acted on later. It answers with a result; the driver then reads
  the instance's health from that supervisor's published instances.
- **The driver dies** (SIGKILL, its machine lost, cut off from etcd): its lease
  expires within its ttl and the lock key goes with it. A supervisor that sees an
  unfinished record without a lock aborts that rollout: it puts back in rotation,
  on every load balancer, what the record says was drained, then marks the record
  aborted with a transaction on the record's revision (two supervisors, or a new
  rollout, never overwrite each other; readmitting twice is harmless). A load
  balancer that does not answer keeps the record unfinished and is tried again at
  every rescan, so nothing stays drained because one was briefly unreachable. A
  driver cut off from etcd sees its lease lost and stops, readmitting what it
  drained itself.
- **Why abort and not resume.** What makes a step safe is the driver's judgement
  after it: the watch of the instance's failed responses and the rollback to the
  previous command. A supervisor resuming would run that judgement with nobody
  watching its output, on options it would have to trust from a record. Aborting
  returns the system to every instance in rotation at once; an instance the dead
  driver left half-replaced is not doing its job, so the next rollout (the same
  command, run again) replaces it first.
- **Temporary instances** (`rollout --surge`, rules: spofless.stack._surge): the
  driver asks for one with a request of op `surge` naming its host; the supervisor
  that runs that host starts it and answers with its pid and address. It removes it
  on a request of op `unsurge`, and by itself once the lock it was started under
  (the request's token) is no longer the lock held: its driver is gone. The
  supervisor that aborts an orphaned rollout also asks the load balancers to remove
  the rollout's temporary instances, should their own supervisor be gone too.
- **A supervisor just started** (`up --wait` returns once its instances are healthy,
  maybe just before its first publication), or its lease lapsed a moment (etcd slow):
  a rollout waits up to PUBLISH_TTL for every instance of its component to be
  published before it says that none runs.
- **A supervisor dies**: its key goes with its lease. A rollout refuses to start
  while an instance of the component runs under no live supervisor, and the
  answer to a request is awaited for a bound only.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from spofless.topology import EtcdComponent, Topology

__all__ = [
    "AgentDecision",
    "AgentView",
    "ReplaceRequest",
    "ReplaceResult",
    "RolloutKeys",
    "RolloutRecord",
    "coordination_etcd",
    "decide",
    "supervisor_id",
]

LOCK_TTL = 5  # seconds a dead driver holds the lock: how long a drained instance waits
PUBLISH_TTL = 10  # seconds a dead supervisor's instances stay listed


def coordination_etcd(topology: Topology) -> str | None:
    """The etcd component rollouts are coordinated through: the first in the file; None
    when there is none (one machine: the state dir's lock and record)."""
    return next((n for n, c in topology.components.items() if isinstance(c, EtcdComponent)), None)


@dataclass(frozen=True, slots=True)
class RolloutKeys:
    """The etcd keys of one topology's rollouts and supervisors."""

    topology: str

    @property
    def prefix(self) -> str:
        return f"/spofless/{self.topology}/rollout/"

    @property
    def lock(self) -> str:
        return self.prefix + "lock"

    @property
    def record(self) -> str:
        return self.prefix + "record"

    @property
    def abort(self) -> str:
        return self.prefix + "abort"

    def request(self, instance: str) -> str:
        return f"{self.prefix}requests/{instance}"

    def result(self, instance: str) -> str:
        return f"{self.prefix}results/{instance}"

    @property
    def supervisors(self) -> str:
        return f"/spofless/{self.topology}/supervisors/"


def supervisor_id(state_dir: Path) -> str:
    """A supervisor's name in etcd: its machine and a digest of its state dir."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]
    return f"{socket.gethostname()}-{digest}"


@dataclass(slots=True)
class RolloutRecord:
    """Where a rollout is: what `rollout --status` shows and what a dead one left drained."""

    pid: int
    component: str
    started_at: float
    steps: int
    host: str = field(default_factory=socket.gethostname)
    step: int = 0  # 1-based once started
    instance: str | None = None
    phase: str = "planned"  # draining | replacing | readmitted | done | failed | aborted
    drained: list[str] = field(default_factory=list)  # instances this rollout drained
    surge: list[str] = field(default_factory=list)  # temporary instances it started
    note: str | None = None  # why it ended, when something else ended it
    updated_at: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "failed", "aborted")

    def describe(self, alive: bool) -> str:
        where = f"step {self.step} of {self.steps}" + (
            f", {self.instance}" if self.instance else ""
        )
        state = self.phase if alive or self.finished else f"{self.phase} (its process is gone)"
        drained = f"; drained: {', '.join(self.drained)}" if self.drained else ""
        note = f" ({self.note})" if self.note else ""
        who = (
            f"pid {self.pid}"
            if self.host == socket.gethostname()
            else f"{self.host} pid {self.pid}"
        )
        return f"rollout of {self.component} ({who}): {where}: {state}{note}{drained}"

    def to_json(self) -> str:
        self.updated_at = time.time()
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RolloutRecord | None:
        """The record, or None when `text` is not one (fields it does not know: ignored)."""
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True, slots=True)
class ReplaceRequest:
    """The driver asks the supervisor running `instance` to replace it."""

    id: str
    instance: str
    argv: tuple[str, ...] | None  # None: the command it runs now
    token: int  # the create revision of the lock of the rollout that asks
    # `rollout --run`'s command before expansion: the supervisor expands {state_dir}
    # (and the rest) for itself, as it does `run:` (argv is the driver's expansion).
    run: str | None = None
    # replace | surge (start temporary instance `instance` on `host`) | unsurge (remove it)
    op: str = "replace"
    host: str | None = None

    @classmethod
    def new(
        cls,
        instance: str,
        argv: tuple[str, ...] | None,
        token: int,
        run: str | None = None,
        op: str = "replace",
        host: str | None = None,
    ) -> ReplaceRequest:
        return cls(uuid.uuid4().hex, instance, argv, token, run, op, host)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "instance": self.instance,
                "argv": self.argv,
                "token": self.token,
                "run": self.run,
                "op": self.op,
                "host": self.host,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ReplaceRequest | None:
        try:
            d = json.loads(text)
            argv = d["argv"]
            if argv is not None and not (
                isinstance(argv, list) and argv and all(isinstance(w, str) and w for w in argv)
            ):
                return None
            op = d.get("op", "replace")
            if op not in ("replace", "surge", "unsurge"):
                return None
            return cls(
                str(d["id"]),
                str(d["instance"]),
                None if argv is None else tuple(argv),
                int(d["token"]),
                d.get("run") if isinstance(d.get("run"), str) else None,
                op,
                d.get("host") if isinstance(d.get("host"), str) else None,
            )
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    """What the supervisor did with request `id`: the new pid and the command before, or
    why it could not."""

    id: str
    ok: bool
    pid: int | None = None
    previous_argv: tuple[str, ...] = ()
    error: str | None = None
    supervisor: str = ""
    address: str | None = None  # surge: where the temporary instance listens

    def to_json(self) -> str:
        d = asdict(self)
        d["previous_argv"] = list(self.previous_argv)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ReplaceResult | None:
        try:
            d = json.loads(text)
            return cls(
                str(d["id"]),
                bool(d["ok"]),
                None if d.get("pid") is None else int(d["pid"]),
                tuple(str(w) for w in d.get("previous_argv") or ()),
                d.get("error"),
                str(d.get("supervisor", "")),
                d.get("address") if isinstance(d.get("address"), str) else None,
            )
        except (ValueError, TypeError, KeyError):
            return None


def supervisor_doc(sid: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """What a supervisor publishes: who it is and its instances (as in its state file)."""
    return {
        "supervisor": sid,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "state_dir": document.get("state_dir"),
        "hosts": document.get("hosts"),
        "phase": document.get("phase"),
        "instances": document.get("instances", []),
    }


# -- the supervisor's decision (pure) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentView:
    """What one supervisor sees of the rollout keys, at one revision."""

    mine: frozenset[str]  # the instances it runs
    lock_token: int  # the lock's create revision; 0: no lock
    record: RolloutRecord | None
    requests: tuple[ReplaceRequest, ...]
    results: Mapping[str, str]  # instance -> the id of the result written for it
    done: frozenset[str] = frozenset()  # request ids this supervisor carried out
    hosts: frozenset[str] | None = None  # the hosts it runs; None: every host
    temporaries: Mapping[str, int] = field(default_factory=dict)  # name -> its lock token


@dataclass(frozen=True, slots=True)
class AgentDecision:
    carry_out: tuple[ReplaceRequest, ...]
    abort: bool  # the record's driver is gone: readmit what it drained, mark it aborted
    reason: str
    reap: tuple[str, ...] = ()  # temporary instances whose rollout has ended: remove them


def decide(view: AgentView) -> AgentDecision:
    """What a supervisor does about the rollout keys (rules in the module docstring)."""

    def mine(r: ReplaceRequest) -> bool:
        if r.op == "surge":  # a new instance: the supervisor of its host starts it
            return view.hosts is None or (r.host is not None and r.host in view.hosts)
        return r.instance in view.mine

    todo = tuple(
        r
        for r in view.requests
        if mine(r)
        and r.id not in view.done
        and view.results.get(r.instance) != r.id
        and r.token == view.lock_token
        and r.token != 0
    )
    stale = [r.instance for r in view.requests if mine(r) and r.token != view.lock_token]
    reap = tuple(n for n, token in view.temporaries.items() if token != view.lock_token)
    abort = view.lock_token == 0 and view.record is not None and not view.record.finished
    parts = []
    if todo:
        parts.append(", ".join(f"{r.op} {r.instance}" for r in todo))
    if reap:
        parts.append(f"remove {', '.join(reap)}: the rollout that started them has ended")
    if abort:
        assert view.record is not None
        drained = ", ".join(view.record.drained) or "nothing"
        parts.append(
            f"the rollout of {view.record.component} lost its driver "
            f"({view.record.host} pid {view.record.pid}): abort it, readmit {drained}"
        )
    if stale:
        parts.append(f"ignore the requests of a rollout that ended ({', '.join(stale)})")
    return AgentDecision(todo, abort, "; ".join(parts) or "nothing to do", reap)
