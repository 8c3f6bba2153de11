"""Bad input to `spofless up`: a clear error, exit status 2, and nothing left running."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_fixtures import (
    SPOFLESS,
    free_port_block,
    listening,
    processes_using,
    spofless,
    stack_run,
)

pytestmark = pytest.mark.integration


def service_topology(path: Path, port: int, run: str, extra: str = "", hosts: int = 2) -> Path:
    names = [f"h{i}" for i in range(hosts)]
    path.write_text(
        "name: bad\n"
        "hosts: {" + ", ".join(f"{h}: {{}}" for h in names) + "}\n"
        "components:\n"
        "  web:\n"
        "    kind: service\n"
        f"    instances: [{', '.join(names)}]\n"
        f"    port: {port}\n"
        f"    run: {run}\n" + extra + "entry: [web]\n"
    )
    return path


DEMO = "python -m spofless.demo.app --port {port} --data {state_dir}/r.jsonl"


def assert_nothing_started(state_dir: Path, ports: list[int]) -> None:
    assert processes_using(state_dir) == []
    assert listening(ports) == []


def test_a_run_command_that_does_not_exist(tmp_path: Path) -> None:
    port = free_port_block(2)
    topology = service_topology(tmp_path / "t.yaml", port, "no-such-program-xyz --port {port}")
    state = tmp_path / "state"
    out = spofless("up", topology, "--detach", "--state-dir", state)
    assert out.returncode == 2
    assert "t.yaml:8:5:" in out.stderr and "components.web.run" in out.stderr
    assert "command 'no-such-program-xyz' not found" in out.stderr
    assert "Traceback" not in out.stderr
    assert_nothing_started(state, [port, port + 1])


def test_a_port_in_use_is_named_with_its_owner(tmp_path: Path) -> None:
    port = free_port_block(2)
    topology = service_topology(tmp_path / "t.yaml", port, DEMO)
    state = tmp_path / "state"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + 1))
        holder.listen()
        out = spofless("up", topology, "--detach", "--state-dir", state)
    assert out.returncode == 2, out.stdout
    assert f"127.0.0.1:{port + 1} (web/1 main port): in use by pid {os.getpid()}" in out.stderr
    assert_nothing_started(state, [port])


def test_an_unreachable_etcd_stops_the_start(tmp_path: Path) -> None:
    web, client, peer = free_port_block(2), free_port_block(3), free_port_block(3)
    topology = tmp_path / "t.yaml"
    topology.write_text(
        "name: split\n"
        "hosts: {a: {}, b: {}, c: {}}\n"
        "components:\n"
        "  web:\n"
        "    kind: service\n"
        "    instances: [b, c]\n"
        "    needs: [etcd]\n"
        f"    port: {web}\n"
        f"    run: {DEMO}\n"
        f"  etcd: {{kind: etcd, instances: [a, b, c], port: {client}, peer_port: {peer},"
        " min_up: majority}\n"
        "entry: [web]\n"
    )
    state = tmp_path / "state"
    with stack_run(topology, state):
        # This machine plays c only: its etcd member alone has no quorum, web must not start.
        out = spofless(
            "up", topology, "--host", "c", "--detach", "--timeout", "3", "--state-dir", state
        )
        assert out.returncode == 2, out.stdout
        assert "web needs etcd, but only 0 of 3 members were healthy (it needs 2)" in out.stderr
        assert "everything was stopped" in out.stderr
        assert_nothing_started(state, [web, web + 1, client + 2, peer + 2])


def test_a_state_dir_without_write_permission(tmp_path: Path) -> None:
    port = free_port_block(2)
    topology = service_topology(tmp_path / "t.yaml", port, DEMO)
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o555)
    command = [SPOFLESS, "up", str(topology), "--detach", "--state-dir", str(state)]
    if os.geteuid() == 0:
        # Root writes anywhere: run without the capabilities that override permissions.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *command]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"state dir {state} is not usable: Permission denied" in out.stderr
    assert "--state-dir" in out.stderr
    assert_nothing_started(state, [port, port + 1])


def test_a_topology_with_a_spof_is_refused_unless_allowed(tmp_path: Path) -> None:
    port = free_port_block(2)
    topology = service_topology(tmp_path / "t.yaml", port, DEMO, hosts=1)
    state = tmp_path / "state"
    with stack_run(topology, state) as run:
        out = run.cli("up", "--detach")
        assert out.returncode == 2
        assert "has a single point of failure; spofless does not run it" in out.stderr
        assert "--allow-spof" in out.stderr
        assert_nothing_started(state, [port, port + 1])

        out = run.cli("up", "--detach", "--wait", "--allow-spof")
        assert out.returncode == 0, out.stderr
        assert "warning: running a topology with a single point of failure" in out.stdout
        again = run.cli("up", "--detach", "--allow-spof")
        assert again.returncode == 2 and "already running" in again.stderr
        assert run.cli("down").returncode == 0
        assert_nothing_started(state, [port, port + 1])


def test_kinds_it_cannot_run_are_skipped_with_a_line(tmp_path: Path) -> None:
    port = free_port_block(2)
    extra = (
        "  db: {kind: postgres, instances: [h0, h1]}\n"
        "  cache: {kind: memcached, instances: [h0, h1]}\n"
    )
    topology = service_topology(tmp_path / "t.yaml", port, DEMO, extra=extra)
    with stack_run(topology, tmp_path / "state") as run:
        out = run.cli("up", "--detach", "--wait")
        assert out.returncode == 0, out.stderr
        assert "skipping db: kind postgres needs `port` (SQL) and `api_port`" in out.stdout
        assert "skipping cache: kind memcached is analysis only" in out.stdout
        names = [i["name"] for i in run.status()["instances"]]
        assert names == ["web/0", "web/1"]
        bad = run.cli("logs", "nope")
        assert bad.returncode == 2 and "no instance 'nope'" in bad.stderr


def test_down_and_status_with_nothing_running(tmp_path: Path) -> None:
    port = free_port_block(2)
    topology = service_topology(tmp_path / "t.yaml", port, DEMO)
    out = spofless("down", topology)
    assert out.returncode == 0 and "nothing to stop" in out.stdout
    out = spofless("status", topology)
    assert out.returncode == 0 and "not running" in out.stdout
    # The default state dir sits next to the file.
    assert str(tmp_path / ".spofless" / "t") in out.stdout


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    assert processes_using(tmp_path) == []


def postgres_topology(path: Path) -> tuple[Path, list[int]]:
    sql, api, client, peer = (free_port_block(2) for _ in range(4))
    path.write_text(
        "name: pg\n"
        "components:\n"
        f"  db: {{kind: postgres, instances: 2, port: {sql}, api_port: {api}, needs: [etcd]}}\n"
        f"  etcd: {{kind: etcd, instances: 3, port: {client}, peer_port: {peer},"
        " min_up: majority}\n"
        "entry: [db]\n"
    )
    return path, [sql, sql + 1, api, api + 1, client, client + 1]


def test_a_state_dir_the_postgres_user_cannot_reach(tmp_path: Path) -> None:
    """Refused before anything starts, not a PostgreSQL crash loop found in `logs`."""
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL runs as another OS user only when up runs as root")
    topology, ports = postgres_topology(tmp_path / "t.yaml")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    state = locked / "state"
    out = spofless("up", topology, "--detach", "--allow-spof", "--state-dir", state)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"OS user postgres cannot reach {state}/data/db-0" in out.stderr
    assert "(chmod o+x " in out.stderr and f" {locked})" in out.stderr
    assert "Traceback" not in out.stderr
    assert not state.exists()
    assert_nothing_started(locked, ports)


def test_a_data_dir_of_another_user_is_refused_before_start(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL runs as another OS user only when up runs as root")
    topology, ports = postgres_topology(tmp_path / "t.yaml")
    state = tmp_path / "state"
    data = state / "data" / "db-0"
    data.mkdir(parents=True)
    major = sorted(os.listdir("/usr/lib/postgresql"))[-1]
    (data / "PG_VERSION").write_text(f"{major}\n")  # a cluster, owned by root
    out = spofless("up", topology, "--detach", "--allow-spof", "--state-dir", state)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"data directory {data} is owned by uid 0" in out.stderr
    assert_nothing_started(state, ports)
