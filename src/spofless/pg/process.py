"""One agent as an OS process: `spofless pg agent FILE --component C --instance N`.

The stack runner starts `kind: postgres` instances with this same command, so
an agent run by hand and one run by `spofless up` share one code path:
topology -> AgentSettings (spofless.pg._from_topology) -> Agent.run().

SIGTERM and SIGINT stop the agent cleanly: PostgreSQL stops (fast) first, then
the leader lease is released, so a replica takes over at once instead of
after the ttl. SIGKILL of the agent takes PostgreSQL down with it (parent-death
signal) and the lease expires after the ttl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from spofless._logging import setup_logging
from spofless.dcs import EtcdStore
from spofless.pg._from_topology import agent_settings, etcd_endpoints
from spofless.pg.agent import Agent, AgentSettings
from spofless.topology import Topology

logger = logging.getLogger(__name__)


async def run_agent(settings: AgentSettings, endpoints: list[str]) -> None:
    """Run one agent until SIGTERM or SIGINT, then stop PostgreSQL and free the lease."""
    loop = asyncio.get_running_loop()
    store = EtcdStore(endpoints, settings.dcs)
    agent = Agent(settings, store)
    task = asyncio.create_task(agent.run(), name=f"agent {settings.name}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    logger.info(
        "%s: agent starting (pid of this process is PostgreSQL's parent); etcd %s, prefix %s",
        settings.name,
        ",".join(endpoints),
        settings.prefix,
    )
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await store.close()
        logger.info("%s: agent stopped", settings.name)


def agent_main(topology: Topology, component: str, index: int, state_dir: Path) -> None:
    """Build the settings from the topology (errors raise before anything starts) and run."""
    settings = agent_settings(topology, component, index, state_dir)
    endpoints = etcd_endpoints(topology, component)
    setup_logging(f"{component}/{index}")
    asyncio.run(run_agent(settings, endpoints))
