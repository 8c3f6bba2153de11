"""`Lab`: one handle on a lab for the CLI, the stack runner, drills and tests."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spofless.lab import _apply, _faults
from spofless.lab import _netns as ns
from spofless.lab._errors import LabError
from spofless.lab._plan import Impairment, LabPlan, lab_id_for, lab_topology, plan_lab
from spofless.lab._state import DEFAULT_STATE_DIR, LabState, load_state
from spofless.topology import Topology


@dataclass(frozen=True)
class Lab:
    """A lab by id; every method reads the state file, so any process can hold one."""

    lab_id: str
    state_dir: Path = DEFAULT_STATE_DIR

    @classmethod
    def of(
        cls, topology: Topology, state_dir: Path | None = None, lab_id: str | None = None
    ) -> Lab:
        """The handle of `topology`'s lab (made or not): same file, same lab."""
        return cls(lab_id or lab_id_for(topology), state_dir or DEFAULT_STATE_DIR)

    @classmethod
    def up(
        cls, topology: Topology, state_dir: Path | None = None, lab_id: str | None = None
    ) -> Lab:
        """Make `topology`'s lab. LabUnavailable without root or namespaces."""
        ns.check_available()
        lab = cls.of(topology, state_dir, lab_id)
        _apply.apply(plan_lab(topology, lab.lab_id), topology.source, lab.state_dir)
        return lab

    def down(self) -> list[str]:
        """Remove the lab and everything running in it; the namespaces deleted."""
        return _apply.teardown(self.lab_id, self.state_dir)

    def state(self) -> LabState:
        state = load_state(self.state_dir, self.lab_id)
        if state is None:
            raise LabError(f"lab {self.lab_id} is not up (no state in {self.state_dir})")
        return state

    @property
    def plan(self) -> LabPlan:
        return self.state().plan

    def topology(self, topology: Topology) -> Topology:
        """`topology` as it runs in this lab: hosts at their lab addresses."""
        return lab_topology(topology, self.plan)

    # -- running things in a host ---------------------------------------------

    def argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside `host`'s namespace (its pid is the program's)."""
        return ns.exec_argv(self.plan.host(host).netns, argv)

    def control_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run in the lab's control namespace, from where every host is reachable."""
        control = self.plan.control
        if control is None:
            raise LabError(f"lab {self.lab_id} has no control namespace; recreate it")
        return ns.exec_argv(control.netns, argv)

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(host, argv), **kwargs)

    def pids(self, host: str) -> list[int]:
        return ns.pids_in_netns(self.plan.host(host).netns)

    # -- faults ------------------------------------------------------------------

    def cut(self, element: str) -> str:
        return _faults.cut(self.state_dir, self.lab_id, element)

    def restore(self, element: str | None = None) -> list[str]:
        return _faults.restore(self.state_dir, self.lab_id, element)

    def impair(
        self, element: str, latency_ms: float = 0.0, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> str:
        extra = Impairment(latency_ms, jitter_ms, loss_pct)
        return _faults.impair(self.state_dir, self.lab_id, element, extra)

    def pause(self, host: str) -> list[int]:
        return _faults.signal_host(self.state_dir, self.lab_id, host, "pause")

    def resume(self, host: str) -> list[int]:
        return _faults.signal_host(self.state_dir, self.lab_id, host, "resume")

    def kill(self, host: str) -> list[int]:
        return _faults.signal_host(self.state_dir, self.lab_id, host, "kill")

    # -- status --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the lab is now, as plain data (the CLI prints it)."""
        state = load_state(self.state_dir, self.lab_id)
        if state is None:
            leftovers = ns.netns_names(f"spf{self.lab_id}-")
            return {"lab": self.lab_id, "up": False, "leftover_namespaces": leftovers}
        plan = state.plan
        return {
            "lab": self.lab_id,
            "source": state.source,
            "up": state.status == "up" and _apply.is_up(state),
            "status": state.status,
            "subnet": plan.subnet,
            "backend": plan.backend,
            "relay_pid": state.relay_pid if plan.backend == "relay" else None,
            "relay_alive": _apply.relay_alive(state) if plan.backend == "relay" else None,
            "hosts": [
                {
                    "host": h.name,
                    "address": h.address,
                    "zone": h.zone,
                    "netns": h.netns,
                    "exists": ns.netns_exists(h.netns),
                    "cut": h.element in state.cut,
                    "processes": len(ns.pids_in_netns(h.netns)),
                }
                for h in plan.hosts.values()
            ],
            "links": [
                {
                    "link": lk.element,
                    "cut": lk.element in state.cut,
                    "per_crossing": _imp(state.effective(lk)),
                    "fault": _imp(state.extra[lk.element]) if lk.element in state.extra else None,
                }
                for lk in plan.links
            ],
        }


def _imp(i: Impairment) -> dict[str, float]:
    return {"delay_ms": i.delay_ms, "jitter_ms": i.jitter_ms, "loss_pct": i.loss_pct}
