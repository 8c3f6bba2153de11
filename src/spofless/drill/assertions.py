"""`--assert 'rto < 5s'`: a small comparison language over a drill's figures, no eval.

    assertion := METRIC OP VALUE
    METRIC    := one of METRICS (lost_writes, rto, errors, ...)
    OP        := == | != | < | <= | > | >=
    VALUE     := a number, with an optional unit for times: ms, s, m (`5s`, `250ms`, `0.5`)

Each assertion is parsed before the drill starts (a typo is an input error, exit 2)
and checked against the summary afterwards. `expect:` of a scenario gives upper
bounds (`{rto: 5s}` is `rto <= 5s`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from spofless.errors import SpoflessError

# What a summary holds, and what each means (the README lists them too).
METRICS: dict[str, str] = {
    "lost_writes": "acknowledged writes missing at the end",
    "uncertain_writes": "writes whose outcome is unknown",
    "phantom_writes": "rows present that were never attempted",
    "divergent": "PostgreSQL members whose rows differ from the primary's",
    "errors": "failed client requests, every stream",
    "error_rate": "failed / all client requests",
    "rto": "longest outage window clients saw, seconds",
    "rpo_writes": "acknowledged writes lost (as lost_writes)",
    "rpo_seconds": "how far back in time the lost writes go",
    "detect": "longest time until spofless's status showed a fault, seconds",
    "recover": "longest time from a fault's end to full redundancy, seconds",
    "faults": "faults applied",
    "aborted": "1 when the drill was aborted",
    "unrecovered": "1 when the system was not whole again after the drill",
    "mispredicted": "elements whose outcome differs from the analysis (default plan)",
}

_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "": 1.0}
_ASSERTION = re.compile(r"^\s*([a-z_]+)\s*(==|!=|<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


class AssertionSyntaxError(SpoflessError):
    """An --assert that does not read (exit 2 before anything runs)."""


@dataclass(frozen=True, slots=True)
class Assertion:
    metric: str
    op: str
    value: float
    text: str

    def holds(self, summary: Mapping[str, float | None]) -> bool:
        """Whether the figure satisfies it; a figure the drill could not measure fails."""
        actual = summary.get(self.metric)
        return actual is not None and _OPS[self.op](float(actual), self.value)

    def __str__(self) -> str:
        return self.text


def parse_assertion(text: str) -> Assertion:
    m = _ASSERTION.match(text)
    if not m:
        raise AssertionSyntaxError(
            f"--assert {text!r}: write METRIC OP VALUE, e.g. 'lost_writes == 0' or 'rto < 5s' "
            f"(OP one of {', '.join(_OPS)})"
        )
    metric, op, number, unit = m.group(1), m.group(2), m.group(3), m.group(4) or ""
    if metric not in METRICS:
        raise AssertionSyntaxError(
            f"--assert {text!r}: unknown figure {metric!r} (figures: {', '.join(METRICS)})"
        )
    return Assertion(metric, op, float(number) * _UNIT[unit], " ".join(text.split()))


def expectations(expect: Mapping[str, float]) -> list[Assertion]:
    """A scenario's `expect:` as upper bounds."""
    out = []
    for metric, bound in expect.items():
        if metric not in METRICS:
            raise AssertionSyntaxError(
                f"expect: unknown figure {metric!r} (figures: {', '.join(METRICS)})"
            )
        out.append(Assertion(metric, "<=", float(bound), f"{metric} <= {bound:g}"))
    return out
