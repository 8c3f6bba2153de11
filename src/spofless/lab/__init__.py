"""The lab: every host of a topology as a network namespace on one machine (Linux, root).

    plan_lab(topology)        the layout, purely: namespaces, bridges, links, addresses
    lab_topology(topo, plan)  the topology with each host at its lab address
    Lab.up(topology)          make it (iproute2; netem or the user-space relay for links)
    Lab.argv(host, argv)      a command wrapped to run inside a host's namespace
    Lab.cut / restore / impair / pause / resume / kill   faults for drills
    Lab.down()                remove every namespace, link and process it made

See `_plan.py` for the layout and the address plan.
"""

from spofless.lab._errors import LabError, LabUnavailable
from spofless.lab._lab import Lab
from spofless.lab._netns import check_available
from spofless.lab._plan import (
    DEFAULT_HOST,
    HostPlan,
    Impairment,
    LabPlan,
    LinkPlan,
    crossing_impairments,
    lab_id_for,
    lab_id_for_path,
    lab_topology,
    plan_lab,
)
from spofless.lab._state import DEFAULT_STATE_DIR, LabState

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_STATE_DIR",
    "HostPlan",
    "Impairment",
    "Lab",
    "LabError",
    "LabPlan",
    "LabState",
    "LabUnavailable",
    "LinkPlan",
    "check_available",
    "crossing_impairments",
    "lab_id_for",
    "lab_id_for_path",
    "lab_topology",
    "plan_lab",
]
