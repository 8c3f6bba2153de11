"""What the rollout tests share: the new and the never-healthy commands, a bounded HTTP
load through the load balancers, and looks at the stack (the supervisor's commands,
the state file, the load balancers' admin states)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from typing import Any

from stack_fixtures import StackRun

from spofless.stack._control import request
from spofless.stack._state import read_state

V2 = "python -m spofless.demo.app --host {host} --port {port} --name web-{index}-v2"
NEVER_HEALTHY = "python -c 'import time; time.sleep(600)'"


def get(port: int) -> tuple[int, str]:
    """GET / through `port`: the status and the instance that answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, json.loads(response.read()).get("instance", "")
    finally:
        conn.close()


class Load:
    """Requests through both load balancers (`lb`, `lb + 1`), one after another, bounded
    in count (20,000) and time (120 s)."""

    def __init__(self, lb: int) -> None:
        self.ports = [lb, lb + 1]
        self.failures: list[str] = []
        self.answers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        for i in range(20000):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                status, who = get(self.ports[i % 2])
                if status != 200:
                    self.failures.append(f"HTTP {status}")
                self.answers.append(who)
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def admin_states(port: int) -> dict[str, str]:
    """Backend name -> its admin state (enabled, drain, ...) on the load balancer whose
    admin API is on `port`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/status")
        backends = json.loads(conn.getresponse().read())["backends"]
        return {name: str(b["admin"]) for name, b in backends.items()}
    finally:
        conn.close()


def run_commands(run: StackRun) -> dict[str, list[str]]:
    """Each instance's command, as the supervisor runs it."""
    answer = asyncio.run(request(run.state_dir.resolve(), {"op": "commands"}, 10))
    return answer["commands"]  # type: ignore[no-any-return]


def recorded(run: StackRun) -> dict[str, dict[str, Any]]:
    """The state file's instances by name (cheaper than `status` to poll on a loaded
    machine)."""
    return {i["name"]: i for i in (read_state(run.state_dir) or {}).get("instances", [])}


def whole(run: StackRun) -> bool:
    """Every instance up and healthy, as `status` says."""
    return all(i["state"] == "up" and i["health"] == "healthy" for i in run.status()["instances"])
