"""Helpers for the stack runner's integration tests: free ports, topology copies, the CLI.

Every test gets its own ports from the OS and its own state dir; `StackRun`
always runs `spofless down` and then kills whatever process group the state
file still names, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
from free_ports import port_block as free_port_block

REPO = Path(__file__).resolve().parents[2]
SPOFLESS = str(Path(sys.executable).parent / "spofless")
EXAMPLE = REPO / "examples" / "stack-demo.yaml"


def demo_topology(dest: Path) -> tuple[Path, dict[str, int]]:
    """examples/stack-demo.yaml copied to dest with every base port replaced by a free one."""
    text = EXAMPLE.read_text()
    ports: dict[str, int] = {}
    taken: list[int] = []
    for key, old in (("web", 18080), ("etcd", 12379), ("peer", 12479)):
        new = free_port_block(3, taken)
        taken += range(new, new + 3)
        ports[key] = new
        text, count = re.subn(rf"\b{old}\b", str(new), text)
        assert count >= 1, f"{old} not in {EXAMPLE}"
    dest.write_text(text)
    return dest, ports


def spofless(
    *args: str | Path, timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; bounded."""
    return subprocess.run(
        [SPOFLESS, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def status_json(topology: Path, state_dir: Path) -> dict[str, Any]:
    out = spofless("status", topology, "--state-dir", state_dir, "--json", timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def recorded_pgids(state_dir: Path) -> list[int]:
    try:
        state = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return []
    return [i["pgid"] for i in state.get("instances", []) if i.get("pgid")]


def supervisor_pid(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((state_dir / "supervisor.lock").read_text().split()[0])
    return None


def processes_using(state_dir: Path) -> list[str]:
    """Live processes whose command line names the state dir or that lead a recorded group."""
    out = []
    groups = set(recorded_pgids(state_dir))
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if str(state_dir) in cmd or os.getpgid(proc.pid) in groups:
                out.append(f"{proc.pid}: {cmd}")
        except (psutil.Error, ProcessLookupError):
            continue
    return out


def listening(ports: Sequence[int]) -> list[int]:
    """Which of `ports` something listens on (TCP, any address)."""
    wanted = set(ports)
    return sorted(
        {
            c.laddr.port
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in wanted
        }
    )


class StackRun:
    """One stack under test: its file and state dir, torn down however the test ends."""

    def __init__(self, topology: Path, state_dir: Path) -> None:
        self.topology = topology
        self.state_dir = state_dir

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command, *rest = args
        return spofless(
            command, self.topology, *rest, "--state-dir", self.state_dir, timeout=timeout
        )

    def status(self) -> dict[str, Any]:
        return status_json(self.topology, self.state_dir)

    def instance(self, name: str) -> dict[str, Any]:
        (inst,) = [i for i in self.status()["instances"] if i["name"] == name]
        return inst

    def teardown(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cli("down", timeout=60)
        pid = supervisor_pid(self.state_dir)
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if str(self.state_dir) in " ".join(proc.cmdline()):
                    proc.kill()
        for pgid in recorded_pgids(self.state_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def stack_run(topology: Path, state_dir: Path) -> Iterator[StackRun]:
    run = StackRun(topology, state_dir)
    try:
        yield run
    finally:
        run.teardown()


@contextlib.contextmanager
def lab_stack_run(topology_text: str, tmp_path: Path, name: str) -> Iterator[tuple[StackRun, Any]]:
    """A stack to be run with `up --lab`, and its lab, removed even when `down` fails.

    Needs root and namespaces (call lab_fixtures.require_lab first). The lab's
    state goes under tmp_path: SPOFLESS_LAB_STATE_DIR is set for the CLI children
    and restored afterwards.
    """
    from spofless.lab import Lab, lab_id_for_path

    lab_state = tmp_path / "labstate"
    saved = os.environ.get("SPOFLESS_LAB_STATE_DIR")
    os.environ["SPOFLESS_LAB_STATE_DIR"] = str(lab_state)
    path = tmp_path / f"{name}.yaml"
    path.write_text(topology_text)
    lab = Lab(lab_id_for_path(path), lab_state)
    try:
        with stack_run(path, tmp_path / "state") as run:
            yield run, lab
    finally:
        lab.down()  # even when `down` failed
        if saved is None:
            os.environ.pop("SPOFLESS_LAB_STATE_DIR", None)
        else:
            os.environ["SPOFLESS_LAB_STATE_DIR"] = saved


@contextlib.contextmanager
def pg_lab_stack_run(topology_text: str, prefix: str, name: str) -> Iterator[tuple[StackRun, Any]]:
    """lab_stack_run for a topology with PostgreSQL, in a directory of its own that
    PostgreSQL's OS user can reach (pytest's tmp_path is 0700); with $SPOFLESS_KEEP_LOGS
    set, the servers' and agents' logs are copied there before it goes."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    try:
        with lab_stack_run(topology_text, base, name) as (run, lab):
            yield run, lab
    finally:
        keep = os.environ.get("SPOFLESS_KEEP_LOGS")
        if keep:  # for a failure to be read
            shutil.copytree(
                base / "state",
                Path(keep) / base.name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("base", "pg_wal", "global", "*.sock"),
            )
        shutil.rmtree(base, ignore_errors=True)
