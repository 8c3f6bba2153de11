"""Load balancers and DNS run by `spofless up`: traffic survives a web instance's kill -9."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from stack_fixtures import (
    StackRun,
    free_port_block,
    listening,
    processes_using,
    stack_run,
)
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: lbstack
hosts:
  h1: {{}}
  h2: {{}}
  h3: {{}}
components:
  lb:
    kind: load_balancer
    instances: [h1, h2]
    needs: [web]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web}}]
  dns:
    kind: dns
    instances: [h1, h3]
    needs: [lb]
    port: {dns}
    zone: t.example.
    records: {{www: lb}}
  web:
    kind: service
    instances: [h1, h2, h3]
    port: {web}
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz}}
entry: [lb]
"""


@pytest.fixture
def lbstack(tmp_path: Path) -> Iterator[tuple[StackRun, list[int]]]:
    web = free_port_block(3)
    lb = free_port_block(2, avoid=range(web, web + 3))
    admin = free_port_block(2, avoid=[*range(web, web + 3), lb, lb + 1])
    dns = free_port_block(2, avoid=[*range(web, web + 3), lb, lb + 1, admin, admin + 1])
    path = tmp_path / "lbstack.yaml"
    path.write_text(TOPOLOGY.format(web=web, lb=lb, admin=admin, dns=dns))
    ports = [web, web + 1, web + 2, lb, lb + 1, admin, admin + 1, dns, dns + 1]
    with stack_run(path, tmp_path / "state") as run:
        yield run, ports


def get(address: str) -> tuple[int, str]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, json.loads(response.read()).get("instance", "")
    finally:
        conn.close()


def test_traffic_through_a_stack_load_balancer_survives_a_backend_kill9(
    lbstack: tuple[StackRun, list[int]],
) -> None:
    run, ports = lbstack
    up = run.cli("up", "--detach", "--wait", "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    lb0 = run.instance("lb/0")
    assert lb0["state"] == "up" and lb0["health"] == "healthy"
    assert lb0["ports"] == {"main": ports[3], "admin": ports[5]}
    address = lb0["address"]
    assert address == f"127.0.0.1:{ports[3]}"
    # The DNS, started after the balancers were healthy, answers with their address.
    dns1 = run.instance("dns/1")
    assert dns1["state"] == "up" and dns1["address"] == f"127.0.0.1:{ports[8]}"
    query = dns.message.make_query("www.t.example.", "A")
    answer = dns.query.udp(query, "127.0.0.1", timeout=5, port=ports[8]).answer
    assert {rr.address for rrset in answer for rr in rrset} == {"127.0.0.1"}

    answered = {get(address)[1] for _ in range(12)}
    assert answered == {"web-0", "web-1", "web-2"}  # round robin over every web instance

    # A bounded load (at most 400 requests, 20 s) while web/1 is killed.
    failures: list[str] = []
    done = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 20
        for _ in range(400):
            if time.monotonic() > deadline:
                break
            try:
                status, _ = get(address)
                if status >= 500:
                    failures.append(f"HTTP {status}")
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.005)
        done.set()

    client = threading.Thread(target=load, daemon=True)
    client.start()
    time.sleep(0.5)
    web1 = run.instance("web/1")
    os.kill(web1["pid"], signal.SIGKILL)
    assert done.wait(60), "the load did not finish"
    client.join(5)
    assert failures == []

    restarted = wait_for(
        "web/1 restarted and healthy",
        lambda: (i := run.instance("web/1"))["state"] == "up" and i["pid"] != web1["pid"] and i,
    )
    assert restarted["restarts"] == 1

    # The balancer itself is supervised like any instance.
    os.kill(lb0["pid"], signal.SIGKILL)
    wait_for(
        "lb/0 restarted and healthy",
        lambda: (i := run.instance("lb/0"))["state"] == "up" and i["pid"] != lb0["pid"],
    )
    assert get(address)[0] == 200

    down = run.cli("down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_using(run.state_dir) == []
    assert listening(ports) == []
