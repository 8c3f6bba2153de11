"""Errors of the drill layer.

SpoflessError                 (spofless.errors)
└── DrillError                a drill cannot run as asked: nothing runs, the steady state
                              does not hold, a target is not there, a lab fault outside
                              the lab (exit 2; nothing was broken)
"""

from __future__ import annotations

from spofless.errors import SpoflessError


class DrillError(SpoflessError):
    """A drill cannot run as asked; raised before any fault is applied."""
