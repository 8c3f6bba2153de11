"""The command line: parse, build the validated topology, call one function.

One module per command group; importing them registers their commands on
`main`. Exit status everywhere: 0 success, 1 a finding (e.g. a single point
of failure), 2 invalid input or a user error (message, never a traceback).
"""

from spofless.cli import (  # noqa: F401
    _backup,
    _cache,
    _drill,
    _entry,
    _lab,
    _lb,
    _monitor,
    _pg,
    _restore,
    _rollout,
    _secrets,
    _stack,
)
from spofless.cli._root import EXIT_INVALID, main

__all__ = ["EXIT_INVALID", "main"]
