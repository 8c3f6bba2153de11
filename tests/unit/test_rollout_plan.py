"""The rollout's plan: order by role, and what taking each instance out opens."""

from __future__ import annotations

from spofless.rollout import plan_rollout
from spofless.topology import load_topology_text

TOPOLOGY = """\
name: shop
hosts:
  n1: {}
  n2: {}
  n3: {}
components:
  lb: {kind: load_balancer, instances: [n1, n2], needs: [web], port: 8000, routes: [{to: web}]}
  web: {kind: service, instances: [n1, n2, n3], needs: [db], port: 9000, run: app}
  db: {kind: postgres, instances: [n1, n2, n3], needs: [etcd], port: 5432, min_up: 1}
  etcd: {kind: etcd, instances: [n1, n2, n3], min_up: majority, port: 2379, peer_port: 2400}
  pair: {kind: service, instances: [n1, n2], port: 7000, run: app}
entry: [lb, pair]
"""


def _plan(component: str, roles: dict[str, str | None] | None = None) -> list[str]:
    topology = load_topology_text(TOPOLOGY, "shop.yaml")
    return [s.describe() for s in plan_rollout(topology, component, roles or {}).steps]


def test_three_web_instances_roll_one_at_a_time_without_a_spof() -> None:
    assert _plan("web") == [
        f"replace web/{i}: no single point of failure while it is out" for i in range(3)
    ]


def test_a_pair_opens_a_spof_while_one_is_out() -> None:
    topology = load_topology_text(TOPOLOGY, "shop.yaml")
    plan = plan_rollout(topology, "pair", {})
    assert [s.new_spofs for s in plan.refusals] == [("pair/1",), ("pair/0",)]
    assert plan.steps[0].describe() == (
        "replace pair/0: while it is out, pair/1 is a single point of failure"
    )


def test_postgres_moves_its_primary_last_after_a_switchover() -> None:
    steps = _plan("db", {"db/0": "primary", "db/1": "replica", "db/2": "replica"})
    assert [s.split(":")[0] for s in steps] == [
        "replace db/1",
        "replace db/2",
        "switch over",
        "replace db/0",
    ]


def test_etcd_leader_last_and_three_members_cannot_lose_one_more() -> None:
    topology = load_topology_text(TOPOLOGY, "shop.yaml")
    plan = plan_rollout(topology, "etcd", {"etcd/0": "leader"})
    assert [s.instance for s in plan.steps] == ["etcd/1", "etcd/2", "etcd/0"]
    assert plan.steps[0].new_spofs == ("etcd/0", "etcd/2")
    assert plan.steps[0].describe().endswith("each of etcd/0, etcd/2 is a single point of failure")


def test_a_component_that_goes_down_without_the_instance_says_so() -> None:
    topology = load_topology_text(
        TOPOLOGY.replace(
            "entry: [lb, pair]",
            "  solo: {kind: service, instances: [n3], port: 7100, run: app}\n"
            "entry: [lb, pair, solo]",
        ),
        "shop.yaml",
    )
    (step,) = plan_rollout(topology, "solo", {}).steps
    assert step.down == ("solo",)
    assert step.describe() == "replace solo/0: solo goes down while it is out"


def test_surge_starts_a_temporary_instance_first_so_a_pair_keeps_its_redundancy() -> None:
    topology = load_topology_text(TOPOLOGY, "shop.yaml")
    plan = plan_rollout(topology, "pair", {}, surge=1)
    assert [(s.action, s.instance, s.host) for s in plan.steps] == [
        ("surge", "pair/2", "n3"),  # the host where pair runs least
        ("replace", "pair/0", None),
        ("replace", "pair/1", None),
        ("unsurge", "pair/2", "n3"),
    ]
    assert plan.refusals == ()
    assert plan.steps[0].describe().startswith("surge: start pair/2 on n3, a temporary instance")
    assert plan.steps[-1].describe() == "remove pair/2 on n3: drained first, then stopped"


def test_a_surge_on_a_host_the_pair_already_uses_still_leaves_that_host_a_spof() -> None:
    topology = load_topology_text(
        "name: two\nhosts: {n1: {}, n2: {}}\ncomponents:\n"
        "  pair: {kind: service, instances: [n1, n2], port: 7000, run: app}\nentry: [pair]\n",
        "two.yaml",
    )
    plan = plan_rollout(topology, "pair", {}, surge=1)
    assert plan.steps[0].host == "n1"
    # pair/1 out: pair/0 and the surge share n1, which is then a single point of failure.
    assert [s.instance for s in plan.refusals] == ["pair/1"]
    assert plan.refusals[0].new_spofs == ("host:n1",)
