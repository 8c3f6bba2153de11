"""One log format for every process spofless starts, naming the instance."""

from __future__ import annotations

import logging
import re

import pytest

from spofless._logging import setup_logging


def test_each_line_names_the_instance(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        setup_logging("lb/0 worker")
        setup_logging("lb/1 worker")  # again: renamed, not doubled
        logging.getLogger("spofless.lb").info("%s: up", "web/0")
        logging.getLogger("httpx").info("one line per request")
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\S+ \S+ INFO lb/1 worker spofless\.lb: web/0: up", lines[0])
