"""Logging setup for every process spofless starts: one format, naming the instance.

    setup_logging("lb/0")

Each line reads `<time> <LEVEL> <instance> <logger>: <message>`, so that the
logs of many processes (the stack collects one file per instance, a lab many
hosts') can be merged and still say which process wrote each line.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s {instance} %(name)s: %(message)s"


def setup_logging(instance: str, level: int = logging.INFO) -> None:
    """Log to stderr at `level` in spofless's format; call again to rename the instance."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT.format(instance=instance.replace("%", "%%"))))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs one line per request: one per etcd call, several a second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
