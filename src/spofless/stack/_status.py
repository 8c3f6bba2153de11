"""`spofless status`: the state file read back, checked against what still runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from spofless.pg import format_lsn
from spofless.stack._cache import CACHE_KEYS
from spofless.stack._errors import StackError
from spofless.stack._pg import format_lag
from spofless.stack._plan import BACKUP_KIND, BACKUP_SUFFIX, StackPlan
from spofless.stack._process import group_alive
from spofless.stack._state import instance_doc, read_state, supervisor_alive
from spofless.topology import PostgresComponent

_STATE_STYLE = {
    "up": "green",
    "starting": "cyan",
    "restarting": "yellow",
    "down": "red",
    "failed": "bold red",
    "stopped": "dim",
}


# What a postgres instance has besides every instance's keys (see _supervisor).
PG_KEYS: dict[str, Any] = {
    "agent_pid": None,
    "dsn": None,
    "timeline": None,
    "wal_position": None,
    "lag": None,
}
# An agent-run instance's own keys (postgres: above; cache: its role's details).
_AGENT_KEYS = {"postgres": PG_KEYS, "cache": CACHE_KEYS}


def status_document(plan: StackPlan) -> dict[str, Any]:
    """Every planned instance with its state; `stopped` for those no supervisor runs.

    When the supervisor died (kill -9), the recorded states are stale: an instance
    whose process group is gone is shown `stopped`, and `supervisor.running` is false.
    """
    state = read_state(plan.state_dir)
    alive = supervisor_alive(plan.state_dir)
    now = time.time()
    recorded = {i["name"]: i for i in (state or {}).get("instances", [])}
    instances = []
    for inst in plan.instances:
        doc = recorded.get(inst.name)
        if doc is None:
            doc = instance_doc(inst)
            doc.update(_AGENT_KEYS.get(inst.kind, {}))
        else:
            doc = dict(doc)
            if not alive and doc["state"] not in ("stopped", "failed"):
                pgid = doc.get("pgid")
                if pgid is None or not group_alive(pgid):
                    doc.update(state="stopped", pid=None, health="unknown")
                    doc.update(_AGENT_KEYS.get(inst.kind, {}))
                doc["message"] = "supervisor is not running"
        # A postgres instance's `pid` is its postmaster's; the supervised process is the agent.
        running = doc.get("agent_pid", doc["pid"]) is not None and doc["started_at"] is not None
        doc["uptime"] = round(now - doc["started_at"], 1) if running else None
        instances.append(_with_backup(plan, doc, now))
    instances += _temporaries(recorded, alive, now)
    phase = (state or {}).get("phase", "stopped")
    if not alive and phase in ("starting", "running", "stopping"):
        phase = "supervisor-dead"
    return {
        "topology": plan.topology.name,
        "file": plan.topology.source,
        "state_dir": str(plan.state_dir),
        "supervisor": {
            "running": alive,
            "pid": (state or {}).get("supervisor", {}).get("pid") if alive else None,
        },
        "phase": phase,
        "lab": plan.lab,
        "error": (state or {}).get("error"),
        "skipped": [{"component": s.component, "reason": s.reason} for s in plan.skipped],
        "instances": instances,
    }


def _temporaries(
    recorded: dict[str, dict[str, Any]], alive: bool, now: float
) -> list[dict[str, Any]]:
    """A rollout's temporary instances (`--surge`) in the state file: shown while they run
    (or, their supervisor dead, while their process group lives: left behind)."""
    out = []
    for doc in recorded.values():
        if not doc.get("temporary"):
            continue
        doc = dict(doc)
        if not alive:
            pgid = doc.get("pgid")
            if pgid is None or not group_alive(pgid) or doc["state"] in ("stopped", "failed"):
                continue
            doc["message"] = "left behind: its supervisor is not running"
        running = doc["pid"] is not None and doc["started_at"] is not None
        doc["uptime"] = round(now - doc["started_at"], 1) if running else None
        out.append(doc)
    return out


def _with_backup(plan: StackPlan, doc: dict[str, Any], now: float) -> dict[str, Any]:
    """A backup scheduler's entry with `backup`: the newest backup, its age, stale or not
    (from the status file the scheduler writes after every check)."""
    if doc.get("kind") != BACKUP_KIND:
        return doc
    from spofless.backup._scheduler import read_status, status_line, status_path

    pg = doc["component"].removesuffix(BACKUP_SUFFIX)
    comp = plan.topology.components.get(pg)
    if not isinstance(comp, PostgresComponent) or comp.backup is None:
        return doc
    found = read_status(status_path(plan.state_dir, pg, doc["index"]))
    drill = found.get("drill") if found else None
    return {**doc, "backup": status_line(found, comp.backup.schedule, now), "restore_drill": drill}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def status_table(doc: dict[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("INSTANCE", "HOST", "PID", "ADDRESS", "STATE", "HEALTH", "ROLE", "UPTIME"):
        table.add_column(col)
    table.add_column("RESTARTS", justify="right")
    # PostgreSQL's own: timeline, WAL position (the primary's written, a replica's
    # received) and bytes behind the primary.
    pg = any("timeline" in i for i in doc["instances"])
    if pg:
        table.add_column("TL", justify="right")
        table.add_column("WAL")
        table.add_column("LAG", justify="right")
    table.add_column("NOTE", overflow="fold")
    for i in doc["instances"]:
        ports = [str(p) for p in i["ports"].values()]  # main port first
        # The main port at its address, then the instance's other ports.
        if i["address"] and ports:
            ports[0] = i["address"]
        state = i["state"]
        pid = str(i["pid"]) if i["pid"] is not None else "-"
        if i.get("agent_pid") is not None:
            pid = f"{pid} (agent {i['agent_pid']})"
        row: list[str | Text] = [
            f"{i['component']}/{i['index']}" + (" (surge)" if i.get("temporary") else ""),
            i["host"] or "-",
            pid,
            ",".join(ports) or "-",
            Text(state, style=_STATE_STYLE.get(state, "")),
            i["health"],
            i["role"] or "-",
            _duration(i["uptime"]),
            str(i["restarts"]),
        ]
        if pg:
            row += _pg_columns(i)
        note = i["message"] or i.get("backup")
        if i.get("temporary") and not note:
            note = "temporary: started by `rollout --surge`, removed at its end"
        row.append(note or (f"last: {i['last_exit']}" if i["last_exit"] else ""))
        table.add_row(*row)
    return table


def _pg_columns(i: dict[str, Any]) -> list[str | Text]:
    if "timeline" not in i:
        return ["", "", ""]
    tl = str(i["timeline"]) if i["timeline"] is not None else "-"
    wal = format_lsn(i["wal_position"]) if i["wal_position"] is not None else "-"
    return [tl, wal, format_lag(i["lag"])]


def render_status(doc: dict[str, Any]) -> RenderableType:
    sup = doc["supervisor"]
    head = Text(f"{doc['topology']} ({doc['file']}): ")
    if doc.get("lab"):
        head.append(f"in lab {doc['lab']}, ")
    if sup["running"]:
        head.append(f"{doc['phase']}, supervisor pid {sup['pid']}", style="bold")
    elif doc["phase"] == "supervisor-dead":
        head.append("supervisor is not running (killed?); `spofless down` cleans up", "bold red")
    else:
        head.append("not running", style="bold")
    parts: list[RenderableType] = [head, status_table(doc)]
    for s in doc["skipped"]:
        parts.append(Text(f"skipped {s['component']}: {s['reason']}", style="dim"))
    if doc["error"]:
        parts.append(Text(f"error: {doc['error']}", style="red"))
    parts.append(Text(f"state dir: {doc['state_dir']}", style="dim"))
    return Group(*parts)


def live_document(plan: StackPlan, supervisor_doc: dict[str, Any]) -> dict[str, Any]:
    """The status of an in-process supervisor (foreground `up`), in `status_document`'s shape."""
    now = time.time()
    instances = []
    for i in supervisor_doc["instances"]:
        running = i["pid"] is not None and i["started_at"] is not None
        doc = {**i, "uptime": now - i["started_at"] if running else None}
        instances.append(_with_backup(plan, doc, now))
    return {
        "topology": plan.topology.name,
        "file": plan.topology.source,
        "state_dir": str(plan.state_dir),
        "supervisor": {"running": True, "pid": supervisor_doc["supervisor"]["pid"]},
        "phase": supervisor_doc["phase"],
        "lab": plan.lab,
        "error": supervisor_doc["error"],
        "skipped": supervisor_doc["skipped"],
        "instances": instances,
    }


def log_files(plan: StackPlan, selector: str | None) -> list[tuple[str, Path]]:
    """(instance name, log path) for `selector`: None (all), `web` or `web/1`."""
    chosen = []
    for inst in plan.instances:
        if selector is None or selector in (inst.component, inst.name):
            chosen.append((inst.name, inst.log_path))
    return chosen


def status(plan: StackPlan) -> dict[str, Any]:
    return status_document(plan)


def logs(plan: StackPlan, selector: str | None, follow: bool, lines: int, out: TextIO) -> None:
    """Print the last `lines` lines of each chosen log; with `follow`, keep printing new ones."""
    chosen = log_files(plan, selector)
    if not chosen:
        names = ", ".join(i.name for i in plan.instances)
        raise StackError(f"no instance '{selector}' in this stack (instances: {names})")
    prefix = len(chosen) > 1
    offsets: dict[Path, int] = {}
    for name, path in chosen:
        text, offsets[path] = _read_from(path, None, lines)
        _emit(text, name if prefix else None, out)
    while follow:
        time.sleep(0.2)
        for name, path in chosen:
            text, offsets[path] = _read_from(path, offsets[path], 0)
            _emit(text, name if prefix else None, out)


def _read_from(path: Path, offset: int | None, last_lines: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            if offset is None:
                data = f.read()
                kept = (
                    data.decode("utf-8", "replace").splitlines()[-last_lines:] if last_lines else []
                )
                text = "\n".join(kept)
                return (text + "\n" if text else ""), len(data)
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return "", 0
    # Emit whole lines only; keep a partial last line for the next round.
    cut = data.rfind(b"\n") + 1
    return data[:cut].decode("utf-8", "replace"), offset + cut


def _emit(text: str, name: str | None, out: TextIO) -> None:
    for line in text.splitlines():
        out.write(f"{name} | {line}\n" if name else line + "\n")
    out.flush()
