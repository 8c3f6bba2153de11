"""The drill's journal of faults in place, on real processes: a frozen process is
resumed by the next drill, a process that only reuses the pid is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from spofless.drill.journal import Journal, signal_entry, take_back

pytestmark = pytest.mark.integration


def test_take_back_resumes_what_a_killed_drill_froze(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        journal = Journal(tmp_path)
        journal.record(signal_entry([proc.pid]))
        # An entry whose process has another start time (a reused pid): left alone.
        journal.record({"kind": "signal", "pids": [[proc.pid, 1.0]]})
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.1)
        assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
        done = take_back(Journal(tmp_path), lab=None)
        assert set(done) == {
            "resumed pids [] frozen by a drill that did not finish",
            f"resumed pids [{proc.pid}] frozen by a drill that did not finish",
        }
        time.sleep(0.1)
        assert psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED
        assert journal.pending() == {} and not journal.path.exists()
        key = journal.record({"kind": "lab", "elements": ["zone:a/b"]})
        journal.clear(key)
        assert take_back(journal, lab=None) == []
    finally:
        proc.kill()
        proc.wait(10)
