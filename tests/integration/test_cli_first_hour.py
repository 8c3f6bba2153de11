"""The first commands a newcomer runs: `spofless lb` on a busy port, `logs` before `up`."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from stack_fixtures import free_port_block, spofless

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("which", ["listen", "admin"])
def test_lb_on_a_busy_port_names_its_owner_and_exits_2(which: str, tmp_path: Path) -> None:
    listen, admin = free_port_block(1), free_port_block(1)
    busy = listen if which == "listen" else admin
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        out = spofless(
            "lb",
            "--listen",
            f"127.0.0.1:{listen}",
            "--backend",
            "127.0.0.1:9",
            "--admin",
            f"127.0.0.1:{admin}",
        )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"127.0.0.1:{busy} ({which} port): in use by pid {os.getpid()}" in out.stderr


def test_lb_from_a_file_on_a_busy_port_exits_2(tmp_path: Path) -> None:
    port = free_port_block(1)
    topology = tmp_path / "t.yaml"
    topology.write_text(
        "name: t\nhosts: {a: {}}\ncomponents:\n"
        f"  lb: {{kind: load_balancer, instances: [a], port: {port}, routes: [{{to: web}}]}}\n"
        "  web: {kind: service, instances: 1, port: 1}\nentry: [lb]\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        out = spofless("lb", topology, "--component", "lb")
    assert out.returncode == 2, out.stderr
    assert f"127.0.0.1:{port} (listen port): in use by pid {os.getpid()}" in out.stderr


def test_logs_before_up_says_nothing_is_running(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text("name: t\ncomponents: {web: {kind: service, instances: 1}}\nentry: [web]\n")
    out = spofless("logs", topology, "--state-dir", tmp_path / "state")
    assert out.returncode == 1
    assert "nothing is running from" in out.stderr
    assert "spofless up" in out.stderr
