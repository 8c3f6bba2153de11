"""A temporary instance's plan (`rollout --surge`): the component's command on the port
given, beside the file's instances; anything else is refused, naming why."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.stack import StackError, StackPlan, plan_stack
from spofless.stack._surge import free_port, temporary_plan
from spofless.topology import load_topology_text

TOPOLOGY = """\
name: pair
hosts: {h1: {}, h2: {}, h3: {}}
components:
  web:
    kind: service
    instances: [h1, h2]
    port: 8100
    run: app --port {port} --name web-{index} --dir {state_dir}
    env: {MODE: prod}
    health: {type: http, path: /healthz, rise: 3}
  cache:
    kind: service
    instances: [h1, h2]
entry: [web]
"""


def _plan(tmp_path: Path, hosts: tuple[str, ...] = ()) -> StackPlan:
    topology = load_topology_text(TOPOLOGY, "pair.yaml")
    return plan_stack(topology, tmp_path / "state", hosts)


def test_a_temporary_instance_runs_the_command_on_the_port_given(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    inst = temporary_plan(plan, "web/2", "h3", None, 41234)
    assert inst.name == "web/2" and inst.host == "h3"
    assert inst.argv[:3] == ("app", "--port", "41234") and "web-2" in inst.argv
    assert inst.ports == (("main", 41234),) and inst.address == "127.0.0.1:41234"
    assert inst.health is not None and inst.health.rise == 3 and inst.health_port == 41234
    assert inst.env["MODE"] == "prod" and inst.env["SPOFLESS_INSTANCE"] == "2"
    assert inst.log_path == tmp_path / "state" / "logs" / "web-2.log"
    new = temporary_plan(plan, "web/3", "h1", "app2 --port {port}", 41235)
    assert new.argv == ("app2", "--port", "41235")


@pytest.mark.parametrize(
    ("name", "host", "run", "says"),
    [
        ("web/1", "h3", None, "numbered after the file's 2 instances"),
        ("web/x", "h3", None, "numbered after"),
        ("cache/2", "h3", None, "'cache' is not a service this stack runs"),
        ("nope/2", "h3", None, "'nope' is not a service"),
        ("web/2", "h9", None, "host 'h9' is not one this supervisor runs"),
        ("web/2", None, None, "host None is not one"),
        ("web/2", "h3", "app {nope}", "unknown placeholder {nope}"),
    ],
)
def test_what_is_not_a_new_instance_here_is_refused(
    tmp_path: Path, name: str, host: str | None, run: str | None, says: str
) -> None:
    with pytest.raises(StackError, match="surge: ") as err:
        temporary_plan(_plan(tmp_path), name, host, run, 41234)
    assert says in str(err.value)


def test_a_supervisor_starts_one_only_on_its_own_hosts(tmp_path: Path) -> None:
    plan = _plan(tmp_path, ("h1",))
    with pytest.raises(StackError, match="host 'h3' is not one this supervisor runs \\(h1\\)"):
        temporary_plan(plan, "web/2", "h3", None, 41234)
    assert temporary_plan(plan, "web/2", "h1", None, 41234).host == "h1"


def test_a_free_port_is_free() -> None:
    import socket

    port = free_port("127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing holds it


def test_status_shows_a_temporary_instance_as_surge() -> None:
    import io

    from rich.console import Console

    from spofless.stack._status import status_table

    doc = {
        "component": "web", "index": 2, "host": "h3", "pid": 40, "ports": {"main": 41234},
        "address": "127.0.0.1:41234", "state": "up", "health": "healthy", "role": None,
        "uptime": 2.0, "restarts": 0, "message": None, "last_exit": None, "temporary": True,
    }  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=200).print(status_table({"instances": [doc]}))
    line = next(x for x in out.getvalue().splitlines() if x.startswith("web/2"))
    assert line.startswith("web/2 (surge)") and "temporary: started by" in line


def test_temporaries_start_check_their_input_and_go_with_their_rollout(tmp_path: Path) -> None:
    """The supervisor's side, with its start and stop recorded: a bad request changes
    nothing; those started under a lock that is no longer held are removed."""
    import asyncio

    from spofless.stack._plan import InstancePlan
    from spofless.stack._surge import Temporaries

    started: list[InstancePlan] = []
    stopped: list[str] = []

    async def start(inst: InstancePlan) -> int:
        started.append(inst)
        return 4000 + len(started)

    async def stop(name: str) -> None:
        stopped.append(name)

    temps = Temporaries(_plan(tmp_path), start, stop)

    async def run() -> None:
        for bad, says in (
            ({"op": "surge"}, "give `instance`"),
            ({"op": "surge", "instance": "web/2", "host": 3}, "strings or null"),
            ({"op": "surge", "instance": "web/1", "host": "h3"}, "numbered after"),
        ):
            with pytest.raises(StackError, match=says):
                await temps.control(bad)
        assert started == [] and temps.tokens() == {}
        answer = await temps.control({"op": "surge", "instance": "web/2", "host": "h3"})
        assert answer["ok"] and answer["pid"] == 4001
        assert answer["address"].startswith("127.0.0.1:")
        with pytest.raises(StackError, match="runs here already"):
            await temps.surge("web/2", "h3", None, 0)
        await temps.surge("web/3", "h3", None, 41)
        assert temps.tokens() == {"web/2": 0, "web/3": 41}
        await temps.reap(41)  # the rollout holding lock 41 runs; web/2's has ended
        assert stopped == ["web/2"] and temps.tokens() == {"web/3": 41}
        assert (await temps.control({"op": "unsurge", "instance": "web/3"}))["ok"]
        assert (await temps.control({"op": "unsurge", "instance": "web/3"}))["ok"]  # gone
        assert stopped == ["web/2", "web/3"] and temps.tokens() == {}

    asyncio.run(run())
