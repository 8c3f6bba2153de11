"""What `up` plans to run: hosts, commands, ports, skipped kinds, dependency waits."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from spofless.stack import StackError, StackPlan, plan_stack
from spofless.stack._plan import EtcdMemberSpec
from spofless.stack._state import default_state_dir
from spofless.stack._waits import dependency_waits
from spofless.topology import TopologyError, load_topology_text

TOPOLOGY = """\
name: t
hosts:
  a: {}
  b: {address: 127.0.0.2}
components:
  web:
    kind: service
    instances: [a, b]
    needs: [etcd]
    port: 8000
    run: app --port {port} --bind {host} --n {index} --dir '{state_dir}/x y'
    env: {MODE: demo}
  etcd: {kind: etcd, instances: [a, b, a], port: 2379, peer_port: 2479, min_up: majority}
  db: {kind: postgres, instances: [a, b]}
  cache: {kind: memcached, instances: 2}
  docs: {kind: service, instances: [a]}
entry: [web]
"""

STATE = Path("/state")


def fake_etcd(spec: EtcdMemberSpec) -> Sequence[str]:
    peers = ",".join(f"{m.name}={m.ip}:{m.peer_port}" for m in spec.cluster)
    return ["etcd", spec.member.name, str(spec.data_dir), peers, spec.cluster_token]


def plan(hosts: Sequence[str] = (), text: str = TOPOLOGY):  # type: ignore[no-untyped-def]
    return plan_stack(load_topology_text(text), STATE, hosts, fake_etcd, cwd=Path("/w"))


def test_every_runnable_instance_dependencies_first() -> None:
    p = plan()
    assert [i.name for i in p.instances] == ["etcd/0", "etcd/1", "etcd/2", "web/0", "web/1"]


def test_service_command_placeholders_and_ports() -> None:
    web1 = plan().instance("web/1")
    assert web1.argv == (
        "app",
        "--port",
        "8001",
        "--bind",
        "127.0.0.2",
        "--n",
        "1",
        "--dir",
        "/state/x y",
    )
    assert web1.ports == (("main", 8001),)
    assert web1.address == "127.0.0.2:8001"
    # What `up` tells every service (no topology file here: text), then its own `env`.
    assert web1.env == {"SPOFLESS_COMPONENT": "web", "SPOFLESS_INSTANCE": "1", "MODE": "demo"}
    assert web1.log_path == STATE / "logs" / "web-1.log"
    assert web1.health is not None and web1.health.type == "tcp"  # default: main port
    assert web1.cwd == Path("/w")


def test_a_service_learns_the_file_spofless_reads() -> None:
    topology = load_topology_text(TOPOLOGY)
    p = plan_stack(topology, STATE, (), fake_etcd, cwd=Path("/w"), topology_file=Path("/t.yaml"))
    assert p.instance("web/0").env["SPOFLESS_TOPOLOGY"] == "/t.yaml"


def test_etcd_members_form_one_cluster() -> None:
    e2 = plan().instance("etcd/2")
    assert e2.ports == (("client", 2381), ("peer", 2481))
    assert e2.argv == (
        "etcd",
        "etcd-2",
        "/state/data/etcd-2",
        "etcd-0=127.0.0.1:2479,etcd-1=127.0.0.2:2480,etcd-2=127.0.0.1:2481",
        "t-etcd",
    )
    assert e2.health is not None and e2.health.path == "/health"


def test_kinds_spofless_cannot_run_are_skipped_with_a_reason() -> None:
    reasons = {s.component: s.reason for s in plan().skipped}
    assert "kind postgres needs `port` (SQL) and `api_port`" in reasons["db"]
    assert "memcached is analysis only" in reasons["cache"]
    assert "without `run:`" in reasons["docs"]


def test_hosts_select_instances() -> None:
    p = plan(["b"])
    assert [i.name for i in p.instances] == ["etcd/1", "web/1"]
    assert "docs" not in {s.component for s in p.skipped}  # not on b anyway


def test_unknown_host_is_an_error() -> None:
    with pytest.raises(StackError, match="--host c: no such host"):
        plan(["c"])


def test_two_instances_on_one_port_are_refused() -> None:
    # Caught when the file is loaded (file:line), before anything is planned.
    text = TOPOLOGY.replace("peer_port: 2479", "peer_port: 2381")
    with pytest.raises(
        TopologyError, match=r"port 2381 on 127.0.0.1 is both etcd/0's peer_port and etcd/2's port"
    ):
        plan(text=text)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("app --port {prot}", "unknown placeholder {prot}"),
        ("app 'unclosed", "cannot split the command"),
        ("app {", "bad placeholder"),
        ("   ", "the command is empty"),
    ],
)
def test_bad_run_commands_are_topology_errors(run: str, message: str) -> None:
    text = f"name: t\ncomponents:\n  w: {{kind: service, instances: 2, run: {run!r}}}\nentry: [w]\n"
    with pytest.raises(TopologyError, match=message) as err:
        load_topology_text(text)
    assert "components.w.run" in str(err.value) and "<memory>:3:" in str(err.value)


def test_dependency_waits_name_every_member_and_the_quorum() -> None:
    (wait,) = dependency_waits(load_topology_text(TOPOLOGY), "web")
    assert wait.dependency == "etcd" and wait.required == 2
    assert wait.addresses == (("127.0.0.1", 2379), ("127.0.0.2", 2380), ("127.0.0.1", 2381))
    assert "0 of 3 members were healthy (it needs 2)" in wait.failure(0, 5)
    assert dependency_waits(load_topology_text(TOPOLOGY), "etcd") == []


def test_default_state_dir_is_next_to_the_file(tmp_path: Path) -> None:
    assert default_state_dir(tmp_path / "shop.yaml") == tmp_path / ".spofless" / "shop"


LB_TOPOLOGY = """\
name: t
hosts:
  a: {}
  b: {address: 127.0.0.2}
components:
  lb:
    kind: load_balancer
    instances: [a, b]
    needs: [web]
    port: 9000
    admin_port: 9100
    routes: [{to: web}]
  plain: {kind: load_balancer, instances: [a], port: 9200, routes: [{to: web}]}
  bare: {kind: load_balancer, instances: [b], routes: [{to: web}]}
  web: {kind: service, instances: [a, b], port: 8000, run: "app {port}"}
entry: [lb]
"""


def lb_plan() -> StackPlan:
    return plan_stack(
        load_topology_text(LB_TOPOLOGY),
        STATE,
        etcd_argv=fake_etcd,
        cwd=Path("/w"),
        topology_file=Path("/files/t.yaml"),
    )


def test_load_balancers_run_spofless_lb_on_their_own_file_after_what_they_route_to() -> None:
    p = lb_plan()
    assert [i.name for i in p.instances][:2] == ["web/0", "web/1"]
    lb1 = p.instance("lb/1")
    assert lb1.argv == (
        sys.executable,
        "-m",
        "spofless",
        "lb",
        "/files/t.yaml",
        "--component",
        "lb",
        "--instance",
        "1",
    )
    assert lb1.command == lb1.argv  # no wrapper outside the lab
    assert lb1.ports == (("main", 9001), ("admin", 9101))
    assert lb1.address == "127.0.0.2:9001"


def test_load_balancer_health_is_its_admin_api_or_its_listener() -> None:
    p = lb_plan()
    lb1 = p.instance("lb/1")
    assert lb1.health is not None and (lb1.health.type, lb1.health.path) == ("http", "/status")
    assert lb1.health_port == 9101
    plain = p.instance("plain/0")
    assert plain.health is not None and plain.health.type == "tcp" and plain.health_port == 9200


def test_load_balancer_without_port_or_file_is_skipped() -> None:
    reasons = {s.component: s.reason for s in lb_plan().skipped}
    assert "needs `port` and `routes`" in reasons["bare"]
    no_file = plan_stack(load_topology_text(LB_TOPOLOGY), STATE, (), fake_etcd)
    reasons = {s.component: s.reason for s in no_file.skipped}
    assert "reads its settings from a topology file" in reasons["lb"]


def test_a_wrapper_runs_each_command_on_its_host() -> None:
    p = plan_stack(
        load_topology_text(LB_TOPOLOGY),
        STATE,
        topology_file=Path("/files/t.yaml"),
        wrap=lambda host: ("netns", str(host)),
        lab="abc123",
    )
    web1 = p.instance("web/1")
    assert web1.command == ("netns", "b", "app", "8001") and web1.argv == ("app", "8001")
    assert p.lab == "abc123"


def test_dns_servers_run_spofless_dns_and_are_checked_over_tcp() -> None:
    text = LB_TOPOLOGY.replace(
        "entry: [lb]",
        "  dns: {kind: dns, instances: [a, b], needs: [lb], port: 5300, zone: t.example.,"
        " records: {www: lb}}\n  nodns: {kind: dns, instances: [a], port: 5400}\nentry: [lb]",
    )
    p = plan_stack(load_topology_text(text), STATE, topology_file=Path("/files/t.yaml"))
    dns1 = p.instance("dns/1")
    assert dns1.argv[3:] == ("dns", "/files/t.yaml", "--component", "dns", "--instance", "1")
    assert dns1.ports == (("main", 5301),) and dns1.address == "127.0.0.2:5301"
    assert dns1.health is not None and dns1.health.type == "tcp" and dns1.health_port == 5301
    assert [i.name for i in p.instances].index("dns/0") > [i.name for i in p.instances].index(
        "lb/1"
    )
    reasons = {s.component: s.reason for s in p.skipped}
    assert "needs `port`, `zone` and `records`" in reasons["nodns"]


def test_waiting_for_a_load_balancer_checks_its_admin_api() -> None:
    text = LB_TOPOLOGY.replace(
        "entry: [lb]", "  front: {kind: service, instances: [a], needs: [lb], run: x}\nentry: [lb]"
    )
    (wait,) = dependency_waits(load_topology_text(text), "front")
    assert wait.addresses == (("127.0.0.1", 9100), ("127.0.0.2", 9101))
    assert wait.check.path == "/status"


PG_TOPOLOGY = """\
name: t
hosts:
  a: {}
  b: {address: 127.0.0.2}
components:
  db: {kind: postgres, instances: [a, b], needs: [etcd], port: 5432, api_port: 8008}
  etcd: {kind: etcd, instances: [a, b, a], port: 2379, peer_port: 2479, min_up: majority}
  web: {kind: service, instances: [a, b], needs: [db], port: 8000, run: "app {port}"}
entry: [web]
"""


def pg_plan() -> StackPlan:
    return plan_stack(
        load_topology_text(PG_TOPOLOGY),
        STATE,
        etcd_argv=fake_etcd,
        topology_file=Path("/files/t.yaml"),
    )


def test_postgres_instances_run_the_agent_with_the_stacks_state_dir() -> None:
    db1 = pg_plan().instance("db/1")
    assert db1.argv == (
        sys.executable,
        "-m",
        "spofless",
        "pg",
        "agent",
        "/files/t.yaml",
        "--component",
        "db",
        "--instance",
        "1",
        "--state-dir",
        "/state",
    )
    assert db1.ports == (("main", 5433), ("api", 8009))
    assert db1.address == "127.0.0.2:5433"
    # The agent makes its data directory (initdb wants it empty and its own).
    assert db1.data_dir is None
    assert db1.health is not None and (db1.health.type, db1.health.path) == ("http", "/health")
    assert db1.health_port == 8009


def test_postgres_without_api_port_is_skipped() -> None:
    text = PG_TOPOLOGY.replace(", api_port: 8008", "")
    p = plan_stack(load_topology_text(text), STATE, etcd_argv=fake_etcd, topology_file=Path("/f"))
    (skipped,) = [s for s in p.skipped if s.component == "db"]
    assert "`api_port`" in skipped.reason


def test_waiting_for_postgres_checks_its_agents() -> None:
    (wait,) = dependency_waits(load_topology_text(PG_TOPOLOGY), "web")
    assert wait.addresses == (("127.0.0.1", 8008), ("127.0.0.2", 8009))
    assert wait.check.path == "/health"


def test_dependents_stop_before_what_they_need_and_etcd_leaders_last() -> None:
    p = pg_plan()
    assert p.stop_waves({"etcd/1"}) == [
        ["web/0", "web/1"],
        ["db/0", "db/1"],
        ["etcd/0", "etcd/2"],
        ["etcd/1"],
    ]
    assert p.stop_waves()[-1] == ["etcd/0", "etcd/1", "etcd/2"]


VIP_TOPOLOGY = """\
name: t
hosts:
  a: {}
  b: {address: 127.0.0.2}
  c: {address: 127.0.0.3}
components:
  etcd: {kind: etcd, instances: [a, b, c], port: 2379, peer_port: 2479, min_up: majority}
  web: {kind: service, instances: [a, b], port: 8000, run: app}
  lb:
    kind: load_balancer
    instances: [a, b]
    needs: [web]
    port: 8080
    routes: [{to: web}]
    vip: {address: 10.77.255.200/16}
entry: [lb]
"""


def test_a_vip_runs_one_agent_per_load_balancer_instance_in_the_lab_only() -> None:
    topology = load_topology_text(VIP_TOPOLOGY)
    outside = plan_stack(topology, STATE, etcd_argv=fake_etcd, topology_file=Path("/f.yaml"))
    assert "lb-vip" not in {i.component for i in outside.instances}
    (skipped,) = [s for s in outside.skipped if s.component == "lb-vip"]
    assert "needs the lab" in skipped.reason and "lb runs without it" in skipped.reason
    # Every instance of a load balancer sharing a VIP listens on the one port.
    assert [outside.instance(f"lb/{i}").ports[0] for i in (0, 1)] == [("main", 8080)] * 2
    assert outside.instance("lb/1").health_port == 8080

    lab = plan_stack(
        topology,
        STATE,
        etcd_argv=fake_etcd,
        topology_file=Path("/f.yaml"),
        wrap=lambda host: ("netns", str(host)),
        lab="abc",
    )
    names = [i.name for i in lab.instances]
    assert names[-2:] == ["lb-vip/0", "lb-vip/1"]  # last: after etcd and the load balancers
    agent = lab.instance("lb-vip/1")
    assert agent.argv[3:] == ("vip", "/f.yaml", "--component", "lb", "--instance", "1")
    assert agent.command[:2] == ("netns", "b") and agent.kind == "vip"
    assert agent.address == "10.77.255.200:8080" and agent.ports == () and agent.health is None
    assert agent.needs == ("etcd",)
    (wait,) = dependency_waits(topology, agent.component, agent.needs)
    assert wait.dependency == "etcd"
    assert lab.stop_waves()[0] == ["lb-vip/0", "lb-vip/1"]  # the address goes first


def test_etcd_members_serve_tls_with_their_hosts_certificates() -> None:
    """TLS on (the default): each member has its host's certificate, https URLs and the
    flags that require client and peer certificates; the stack checks it with its own."""
    from spofless.stack._etcd import member_argv

    topology = load_topology_text(TOPOLOGY, "/top/t.yaml")
    secrets = Path("/top/.spofless/t/secrets")
    p = plan_stack(topology, STATE, etcd_argv=member_argv, cwd=Path("/w"))
    e1 = p.instance("etcd/1")
    argv = set(e1.argv)
    assert "--advertise-client-urls=https://127.0.0.2:2380" in argv
    assert "--listen-peer-urls=https://127.0.0.2:2480" in argv
    assert f"--cert-file={secrets}/hosts/b.crt" in argv
    assert f"--peer-key-file={secrets}/hosts/b.key" in argv
    assert f"--trusted-ca-file={secrets}/ca.crt" in argv
    assert {"--client-cert-auth=true", "--peer-client-cert-auth=true"} <= argv
    assert any(a.startswith("--initial-cluster=etcd-0=https://127.0.0.1:2479,") for a in argv)
    assert e1.health_tls is not None and e1.health_tls.cert == secrets / "clients/spofless.crt"
    (wait,) = dependency_waits(topology, "web")
    assert wait.tls == e1.health_tls
    plain = plan_stack(
        load_topology_text(TOPOLOGY + "security: {tls: false}\n"), STATE, etcd_argv=member_argv
    ).instance("etcd/1")
    assert "--advertise-client-urls=http://127.0.0.2:2380" in plain.argv
    assert not [a for a in plain.argv if "cert" in a] and plain.health_tls is None


PG_BACKUP = """name: t
hosts:
  a: {address: 127.0.0.1}
  b: {address: 127.0.0.1}
components:
  db:
    kind: postgres
    instances: [a, b]
    port: 5440
    api_port: 8440
    backup:
      repositories: [{type: fs, path: /b}]
      schedule: SCHEDULE
entry: [db]
"""


def test_a_backup_scheduler_beside_each_postgres_instance_with_a_schedule() -> None:
    text = PG_BACKUP.replace("SCHEDULE", "{full: '0 2 * * 0'}")
    p = plan_stack(load_topology_text(text), STATE, ("b",), topology_file=Path("/f/t.yaml"))
    (sched,) = [i for i in p.instances if i.kind == "backup"]
    assert sched.name == "db-backup/1" and sched.needs == ("db",) and sched.ports == ()
    assert sched.argv[sched.argv.index("backup") :] == (
        *("backup", "run", "/f/t.yaml", "--component", "db", "--instance", "1"),
        *("--state-dir", str(STATE)),
    )
    # Stopped first: dependents before what they need.
    assert p.stop_waves()[0] == ["db-backup/1"]
    none = PG_BACKUP.replace("SCHEDULE", "{}")
    p = plan_stack(load_topology_text(none), STATE, topology_file=Path("/f/t.yaml"))
    assert not [i for i in p.instances if i.kind == "backup"]
