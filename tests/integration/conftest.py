"""The fixtures every integration test can ask for by name, without importing them.

Where things live (pytest puts this folder on `sys.path`, so helpers are imported
by bare module name, `from pg_fixtures import ServerFactory`):

- `etcd_fixtures`: `etcd_cluster`, a real 3-member etcd cluster, stopped after the test.
- `pg_fixtures`: `pg_base_dir` (a private folder PostgreSQL's OS user can reach) and
  `pg_factory` (real PostgreSQL servers on free ports, always stopped).
- `lab_fixtures`: `small_lab` (network namespaces; skips without root) and `require_lab`.
- `stack_pg`: `pg_stack`, `spofless up` of examples/postgres-ha.yaml on free ports.
- `stack_fixtures`: running `spofless up` and reading its state; `lb_fixtures`,
  `dns_fixtures`, `vip_fixtures`: the load balancer, DNS and VIP processes.
- `waiting.wait_for`: the one bounded wait; `free_ports`: the one free-port helper.

`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`): each
integration module whole on one worker, and the lab tests (network namespaces, every
host's processes) as one group, one after another, beside the rest.
"""

from pathlib import Path

import pytest
from etcd_fixtures import etcd_cluster
from lab_fixtures import small_lab_fixture
from pg_fixtures import pg_base_dir, pg_factory
from stack_pg import pg_stack

__all__ = ["etcd_cluster", "pg_base_dir", "pg_factory", "pg_stack", "small_lab_fixture"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, each integration module runs whole on one worker (its module-scoped
    clusters are made once, its tests keep their order), and the lab tests are one
    group: never two labs at once."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue  # unit tests: spread one by one
        name = item.path.stem
        lab = item.get_closest_marker("lab") is not None or name.endswith("_lab")
        item.add_marker(pytest.mark.xdist_group("lab" if lab else name))
