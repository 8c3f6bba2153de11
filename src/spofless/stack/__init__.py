"""Running a topology on this machine: `up`, `down`, `status`, `logs`, the supervisor."""

from spofless.stack._commands import make_plan, running_plan, up
from spofless.stack._down import down
from spofless.stack._errors import PortInUseError, SpofFoundError, StackError, StartError
from spofless.stack._kinds import InstanceHealth, instance_health
from spofless.stack._plan import InstancePlan, Skipped, StackPlan, plan_stack
from spofless.stack._policy import InstanceState, RestartPolicy, decide_exit
from spofless.stack._state import default_state_dir, read_state_quiet
from spofless.stack._status import logs, render_status, status
from spofless.stack._supervisor import Supervisor, SupervisorSettings

__all__ = [
    "InstanceHealth",
    "InstancePlan",
    "InstanceState",
    "PortInUseError",
    "RestartPolicy",
    "Skipped",
    "SpofFoundError",
    "StackError",
    "StackPlan",
    "StartError",
    "Supervisor",
    "SupervisorSettings",
    "decide_exit",
    "default_state_dir",
    "down",
    "instance_health",
    "logs",
    "make_plan",
    "plan_stack",
    "read_state_quiet",
    "render_status",
    "running_plan",
    "status",
    "up",
]
