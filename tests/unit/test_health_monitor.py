"""The health monitor's targets added and removed while it runs (an lb's runtime backends)."""

from __future__ import annotations

import asyncio

import pytest

from spofless.health import HealthMonitor, Status, Target
from spofless.topology import HealthCheck


def test_a_health_monitor_checks_targets_added_and_stops_those_removed() -> None:
    async def run() -> tuple[list[str], list[str], str]:
        spec = HealthCheck(type="tcp", interval=0.05, rise=1, fall=1)
        monitor = HealthMonitor([Target("a", "127.0.0.1", 1)], spec)
        monitor.start()
        monitor.add(Target("b", "127.0.0.1", 1), initial=Status.DOWN)
        with pytest.raises(ValueError, match="checked already"):
            monitor.add(Target("b", "127.0.0.1", 2))
        await asyncio.sleep(0.2)
        checked = sorted(n for n in ("a", "b") if monitor.health(n).last_check is not None)
        monitor.remove("b")
        await asyncio.sleep(0.01)  # the cancelled check ends
        running = sorted(t.get_name() for t in asyncio.all_tasks() if not t.done())
        status = str(monitor.status("a"))
        await monitor.stop()
        return checked, running, status

    checked, running, status = asyncio.run(run())
    assert checked == ["a", "b"]
    assert "health:a" in running and "health:b" not in running
    assert status == "down"  # nothing listens on port 1
