"""What the supervisor of this machine says, and what its instances' processes use.

    supervised(state_dir) -> {instance: Supervised}     from `spofless status`'s state file
    process_sample(pids) -> ProcessSample | None        CPU and memory of a process tree

The monitor reads the state file `spofless up` keeps (the same one `spofless
status` shows), as an operator would: each instance's restarts, its state
(`failed` once the supervisor gave up on a crash loop) and its process ids. A
monitor started by hand, with no supervisor in its state dir, sees none of it:
no crash loops and no CPU or memory (the rest is the same). Only instances the
supervisor of this machine runs have processes the monitor can read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from spofless.monitor._gauges import ProcessSample
from spofless.stack import read_state_quiet


@dataclass(frozen=True, slots=True)
class Supervised:
    """One instance as its supervisor last wrote it."""

    state: str  # starting, up, down, restarting, failed, stopped
    restarts: int
    pids: tuple[int, ...]  # its processes' roots (PostgreSQL: the postmaster and the agent)
    last_exit: str | None = None


def supervised(state_dir: Path) -> dict[str, Supervised]:
    """The instances in the state file of `state_dir`; {} without one."""
    doc = read_state_quiet(state_dir)
    if doc is None:
        return {}
    out: dict[str, Supervised] = {}
    for inst in doc.get("instances", []):
        if not isinstance(inst, dict) or not isinstance(inst.get("name"), str):
            continue
        pids = tuple(
            p for p in (inst.get("pid"), inst.get("agent_pid")) if isinstance(p, int) and p > 0
        )
        restarts = inst.get("restarts")
        out[inst["name"]] = Supervised(
            state=str(inst.get("state", "")),
            restarts=restarts if isinstance(restarts, int) else 0,
            pids=pids,
            last_exit=inst.get("last_exit"),
        )
    return out


def process_sample(pids: Iterable[int]) -> ProcessSample | None:
    """CPU seconds and memory of the processes `pids` and all their descendants; None when
    none of them runs. CPU counts what the processes used and what their children that
    exited used (reaped), so a short-lived PostgreSQL backend is not missed; memory is
    the proportional set size (shared pages divided among the processes that map them)."""
    seen: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in (root, *root.children(recursive=True)):
                seen.setdefault(p.pid, p)
        except psutil.Error:
            continue
    if not seen:
        return None
    cpu = memory = 0.0
    for p in seen.values():
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                try:
                    memory += p.memory_full_info().pss
                except (psutil.AccessDenied, AttributeError):
                    memory += p.memory_info().rss
        except psutil.Error:
            continue  # exited between the listing and the reading
    return ProcessSample(cpu, memory)


def host_capacity() -> tuple[float, float]:
    """This machine's cores and memory in bytes (what `spofless trends` projects against)."""
    return float(psutil.cpu_count() or 1), float(psutil.virtual_memory().total)
