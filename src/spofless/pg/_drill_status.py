"""The newest restore drill of the agent's component, as its API serves it (`/status`
and `/metrics`). spofless.backup is imported only when the component has backups."""

from __future__ import annotations

from typing import Any

from spofless.pg._agent_model import AgentSettings


def drill_reader(settings: AgentSettings) -> Any:
    """What reads the component's newest restore drill for the API; None without backups."""
    if settings.backup_state_dir is None:
        return None
    from spofless.backup import DrillSummaryCache

    return DrillSummaryCache(settings.backup_state_dir, settings.cluster or "")


def drill_metrics(summary: dict[str, Any] | None, component: str) -> list[str]:
    if summary is None:
        return []
    from spofless.backup import drill_metrics as metrics

    return metrics(summary, component)
