"""Rolling changes that never open a single point of failure: `spofless rollout`.

    prepare(topology, state_dir, component, opts) -> Prepared   (checks, plan)
    await rollout(prepared, opts, say) -> RolloutResult

The plan is pure (spofless.rollout.plan): the order of the instances and what
each step opens, from the analysis. The run drains each instance on every load
balancer in front of it, has the supervisor replace it, waits until it does its
job again, readmits it and watches its responses (spofless.rollout.run).
"""

from spofless.rollout._lbs import RolloutError
from spofless.rollout.plan import RolloutPlan, Step, plan_rollout
from spofless.rollout.run import (
    Prepared,
    RolloutOptions,
    RolloutResult,
    StepResult,
    prepare,
    rollout,
)

__all__ = [
    "Prepared",
    "RolloutError",
    "RolloutOptions",
    "RolloutPlan",
    "RolloutResult",
    "Step",
    "StepResult",
    "plan_rollout",
    "prepare",
    "rollout",
]
