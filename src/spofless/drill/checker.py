"""The set checker over SQL writes with unique ids: pure.

Given what the writers attempted and saw acknowledged, and the ids each member
holds at the end (once caught up):

- lost: acknowledged, but missing on the primary;
- phantom: present, but never attempted (a write that came from nowhere);
- divergent: members whose ids differ from the primary's.

A write whose outcome is unknown (it failed or timed out, or its commit returned
with PostgreSQL's "canceling wait for synchronous replication" warning) may or may
not be present: it is neither lost nor phantom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DataVerdict:
    acknowledged: int
    uncertain: int
    lost: list[int] = field(default_factory=list)
    phantom: list[int] = field(default_factory=list)
    divergent: dict[str, str] = field(default_factory=dict)  # member -> what differs

    @property
    def ok(self) -> bool:
        return not self.lost and not self.phantom and not self.divergent

    def __str__(self) -> str:
        parts = [
            f"{self.acknowledged} acknowledged",
            f"{self.uncertain} uncertain",
            f"{len(self.lost)} lost",
            f"{len(self.phantom)} phantom",
            f"{len(self.divergent)} divergent members",
        ]
        text = ", ".join(parts)
        if self.lost:
            text += f"; lost ids {self.lost[:10]}"
        if self.phantom:
            text += f"; phantom ids {self.phantom[:10]}"
        for name, why in self.divergent.items():
            text += f"; {name}: {why}"
        return text


def check_data(
    attempted: Iterable[int],
    acknowledged: Iterable[int],
    uncertain: Iterable[int],
    primary: str,
    members: Mapping[str, set[int]],
) -> DataVerdict:
    """The verdict on `members` (name -> ids it holds), `primary` among them."""
    tried, acked, unsure = set(attempted), set(acknowledged), set(uncertain)
    held = members[primary]
    divergent = {}
    for name, ids in members.items():
        if name == primary or ids == held:
            continue
        missing, extra = len(held - ids), len(ids - held)
        divergent[name] = f"{missing} of the primary's rows missing, {extra} rows it lacks"
    return DataVerdict(
        acknowledged=len(acked),
        uncertain=len(unsure),
        lost=sorted(acked - held),
        phantom=sorted(held - tried),
        divergent=divergent,
    )
