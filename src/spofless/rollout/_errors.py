"""The rollout's error (a SpoflessError: its message, exit status 2 before anything moved)."""

from __future__ import annotations

from spofless.errors import SpoflessError

__all__ = ["RolloutError"]


class RolloutError(SpoflessError):
    """A rollout cannot start or cannot go on; the message says which instance and why."""
