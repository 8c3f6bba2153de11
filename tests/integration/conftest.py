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

`make test` runs the suite on two pytest-xdist workers (`--dist loadfile`): each
module whole on one worker, its tests in order (a module-scoped cluster is made once).
"""

from etcd_fixtures import etcd_cluster
from lab_fixtures import small_lab_fixture
from pg_fixtures import pg_base_dir, pg_factory
from stack_pg import pg_stack

__all__ = ["etcd_cluster", "pg_base_dir", "pg_factory", "pg_stack", "small_lab_fixture"]
