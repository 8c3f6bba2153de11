"""The exceptions of spofless.dcs.

SpoflessError
└── DCSError                 anything coordination reports
    ├── DCSUnavailable       no member answered within the retry timeout: retry on the
    │                        next cycle (a write that raised it may have been applied)
    ├── CompactedError       a read or watch asked for a revision compacted away:
    │                        re-read the current state and watch from there
    ├── LeaseNotFound        the lease expired or was revoked: whatever it held is gone
    ├── DCSRequestError      the store rejected the request (bad argument): a bug
    └── LeadershipLost       fatal for that leadership: stop acting as leader now,
                             campaign again for a new one
"""

from __future__ import annotations

from spofless.errors import SpoflessError


class DCSError(SpoflessError):
    """Coordination failed."""


class DCSUnavailable(DCSError):
    """No member of the store answered within the retry timeout. Retry on the next cycle."""


class CompactedError(DCSError):
    """The revision asked for is older than the store's compaction point."""

    def __init__(self, requested: int, compact_revision: int = 0) -> None:
        kept = f" (store keeps revisions from {compact_revision})" if compact_revision else ""
        super().__init__(
            f"revision {requested} was compacted{kept}; "
            "re-read the current state and watch from its revision"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class LeaseNotFound(DCSError):
    """The lease expired or was revoked; the keys attached to it are gone."""


class DCSRequestError(DCSError):
    """The store rejected the request itself (not a failure of the store)."""


class LeadershipLost(DCSError):
    """This leadership has ended (lease expired, key taken or deleted, resigned)."""
