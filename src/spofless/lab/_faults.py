"""Faults for drills, on a running lab, each undone by `restore`.

Elements are named as the analysis names them: `host:<h>`, `zone:<region>/<zone>`,
`region:<r>`; a bare name is taken as a host, `a/b` as a zone, else a region.

- cut: the element's cable is detached from its bridge on the switch side. The host (or
  the zone's hosts) keeps its link up and its addresses, and sees its peers fall silent:
  a partition, not a NIC failure.
- impair: extra delay, jitter and loss on a zone or region link, each direction, on top
  of the file's figures.
- pause / resume / kill: SIGSTOP, SIGCONT, SIGKILL to every process in a host's namespace.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from spofless.lab import _netns as ns
from spofless.lab._apply import apply_netem, relay_alive
from spofless.lab._errors import LabError
from spofless.lab._plan import Impairment, LabPlan
from spofless.lab._state import LabState, load_state, save_state

logger = logging.getLogger(__name__)


def parse_element(plan: LabPlan, text: str) -> str:
    """`host:a`, `zone:r/z`, `region:r`, or a bare name resolved the same way."""
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = ("zone" if "/" in text else "host" if text in plan.hosts else "region"), text
        if kind == "region" and not any(lk.element == f"region:{text}" for lk in plan.links):
            hosts = ", ".join(plan.hosts)
            links = ", ".join(lk.element for lk in plan.links)
            raise LabError(f"'{text}' is no host ({hosts}) and no zone or region ({links})")
    element = f"{kind}:{name}"
    if kind == "host":
        plan.host(name)
    elif kind in ("zone", "region"):
        plan.link(element)
    else:
        raise LabError(
            f"'{text}': an element is host:<name>, zone:<region>/<zone> or region:<name>"
        )
    return element


def _port(plan: LabPlan, element: str) -> tuple[str, str]:
    """The switch-side interface that connects `element`, and the bridge it belongs on."""
    kind, _, name = element.partition(":")
    if kind == "host":
        host = plan.host(name)
        return host.port, host.bridge
    link = plan.link(element)
    return link.upper, link.upper_bridge


def running_state(state_dir: Path, lab_id: str) -> LabState:
    ns.check_available()
    state = load_state(state_dir, lab_id)
    if state is None or state.status != "up":
        raise LabError(f"lab {lab_id} is not up (no state in {state_dir})")
    return state


def cut(state_dir: Path, lab_id: str, element: str) -> str:
    """Cut `element` off the rest of the lab; the element's canonical name."""
    state = running_state(state_dir, lab_id)
    element = parse_element(state.plan, element)
    port, _ = _port(state.plan, element)
    ns.run(["ip", "-n", state.plan.switch, "link", "set", port, "nomaster"])
    if element not in state.cut:
        state.cut.append(element)
    save_state(state_dir, state)
    logger.info("lab %s: cut %s off", lab_id, element)
    return element


def impair(state_dir: Path, lab_id: str, element: str, extra: Impairment) -> str:
    """Add `extra` to a zone or region link (replacing an earlier extra on it)."""
    state = running_state(state_dir, lab_id)
    element = parse_element(state.plan, element)
    if element.startswith("host:"):
        raise LabError(
            f"{element}: latency and loss go on zone and region links "
            "(a host's own cable has none); use zone:<region>/<zone> or region:<name>"
        )
    state.extra[element] = extra
    _set_impairments(state_dir, state)
    logger.info("lab %s: %s impaired by %s", lab_id, element, extra)
    return element


def restore(state_dir: Path, lab_id: str, element: str | None = None) -> list[str]:
    """Undo cuts and impairments on `element`, or on every element; what was restored."""
    state = running_state(state_dir, lab_id)
    targets = [parse_element(state.plan, element)] if element else [*state.cut, *state.extra]
    restored: list[str] = []
    cmds: list[str] = []
    for el in dict.fromkeys(targets):
        if el in state.cut:
            port, bridge = _port(state.plan, el)
            cmds.append(f"link set {port} master {bridge}")
            state.cut.remove(el)
            restored.append(el)
        if el in state.extra:
            del state.extra[el]
            if el not in restored:
                restored.append(el)
    ns.ip_batch(state.plan.switch, cmds)
    _set_impairments(state_dir, state)
    logger.info("lab %s: restored %s", lab_id, ", ".join(restored) or "nothing")
    return restored


def _set_impairments(state_dir: Path, state: LabState) -> None:
    save_state(state_dir, state)
    if state.plan.backend == "netem":
        apply_netem(state)
    elif relay_alive(state):
        assert state.relay_pid is not None
        ns.signal_pids([state.relay_pid], signal.SIGHUP)
    else:
        raise LabError(f"lab {state.plan.lab_id}: its link relay is not running; recreate the lab")


HOST_SIGNALS = {"pause": signal.SIGSTOP, "resume": signal.SIGCONT, "kill": signal.SIGKILL}


def signal_host(state_dir: Path, lab_id: str, host: str, action: str) -> list[int]:
    """pause / resume / kill every process in `host`'s namespace; the pids signalled."""
    state = running_state(state_dir, lab_id)
    name = host.removeprefix("host:")
    netns = state.plan.host(name).netns
    pids = ns.signal_pids(ns.pids_in_netns(netns), HOST_SIGNALS[action])
    logger.info("lab %s: %s host %s: pids %s", lab_id, action, name, pids)
    return pids
