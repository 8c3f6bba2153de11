"""Faults in place, written down, so that a drill killed outright leaves none behind.

A drill takes every fault back on its way out, however it ends, except when it is
killed with SIGKILL (or its machine loses power): then a frozen process stays frozen
and a cut link stays cut. So each fault that has an undo is written to
`<state dir>/drill-pending.json` before it is applied and struck off once taken back;
the next drill on that state dir first takes back whatever is still written there.

Entries are plain data:

- `{"kind": "signal", "pids": [[pid, create_time], ...]}`: processes a pause froze;
  each gets SIGCONT only when a process with that pid and that start time still runs
  (a pid reused by another process is left alone);
- `{"kind": "lab", "elements": [...]}`: lab elements cut or impaired, restored.

The file is rewritten atomically (temporary file, rename).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

PENDING_FILE = "drill-pending.json"


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PENDING_FILE

    def pending(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        if not data:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".pending-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)

    def record(self, entry: dict[str, Any]) -> str:
        key = uuid.uuid4().hex
        data = self.pending()
        data[key] = entry
        self._write(data)
        return key

    def clear(self, key: str) -> None:
        data = self.pending()
        if data.pop(key, None) is not None:
            self._write(data)


def signal_entry(pids: list[int]) -> dict[str, Any]:
    """The entry of processes about to be frozen (pid and start time of each)."""
    known = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            known.append([pid, psutil.Process(pid).create_time()])
    return {"kind": "signal", "pids": known}


def take_back(journal: Journal, lab: Any) -> list[str]:
    """Take back every fault the journal still holds; what was done, one line each."""
    done = []
    for key, entry in journal.pending().items():
        if entry.get("kind") == "signal":
            resumed = []
            for pid, started in entry.get("pids", []):
                with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                    if psutil.Process(pid).create_time() == started:
                        os.kill(pid, signal.SIGCONT)
                        resumed.append(pid)
            done.append(f"resumed pids {resumed} frozen by a drill that did not finish")
        elif entry.get("kind") == "lab" and lab is not None:
            for element in entry.get("elements", []):
                with contextlib.suppress(Exception):
                    lab.restore(element)
            done.append(f"restored {', '.join(entry.get('elements', []))} in the lab")
        journal.clear(key)
    for line in done:
        logger.warning("%s", line)
    return done
