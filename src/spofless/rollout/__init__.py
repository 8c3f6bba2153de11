"""Rolling changes that never open a single point of failure: `spofless rollout`.

    coordination_for(topology, state_dir) -> Coordination   (etcd, or the state dir)
    await prepare(topology, state_dir, coord, component, opts) -> Prepared   (checks, plan)
    await rollout(prepared, opts, say) -> RolloutResult

The plan is pure (spofless.rollout.plan): the order of the instances and what
each step opens, from the analysis. The run drains each instance on every load
balancer in front of it, has the supervisor replace it, waits until it does its
job again, readmits it and watches its responses (spofless.rollout.run). With
etcd in the topology, the instances may run under supervisors on several
machines: the lock, the record and the requests to replace an instance go through
etcd (spofless.rollout._coordination and ._etcd, spofless.stack._coord). With
`--surge N`, temporary instances start first and go last (spofless.rollout._surge).
"""

from spofless.rollout._coordination import Coordination, coordination_for
from spofless.rollout._errors import RolloutError
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
    "Coordination",
    "Prepared",
    "RolloutError",
    "RolloutOptions",
    "RolloutPlan",
    "RolloutResult",
    "Step",
    "StepResult",
    "coordination_for",
    "plan_rollout",
    "prepare",
    "rollout",
]
