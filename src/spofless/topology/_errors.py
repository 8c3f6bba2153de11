"""Errors of the topology layer.

SpoflessError                 (spofless.errors)
└── TopologyError             the file is not a valid topology; holds every Problem
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spofless.errors import SpoflessError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a topology file, and where."""

    file: str
    line: int  # 1-based; 0 when the problem has no position (e.g. file missing)
    column: int
    field: str  # dotted path such as components.web.instances[2]; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = self.file if self.line == 0 else f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class TopologyError(SpoflessError):
    """A topology file is invalid. `problems` lists everything found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
