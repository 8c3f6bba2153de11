"""One cache agent as an OS process: `spofless cache agent FILE --component C --instance N`.

The stack starts `kind: cache` instances with this same command. SIGTERM and
SIGINT stop Redis, then free the lease (a replica takes over at once); SIGKILL
of the agent takes Redis down with it (parent-death signal) and the lease
expires after the ttl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from spofless._logging import setup_logging
from spofless.cache._settings import cache_settings, etcd_endpoints
from spofless.cache.agent import CacheAgent
from spofless.dcs import EtcdStore
from spofless.topology import Topology

logger = logging.getLogger(__name__)


async def run_agent(agent: CacheAgent) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(agent.run(), name=f"cache agent {agent.settings.name}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    logger.info("%s: agent starting, shard prefix %s", agent.settings.name, agent.settings.prefix)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await agent.store.close()
        logger.info("%s: agent stopped", agent.settings.name)


def agent_main(topology: Topology, component: str, index: int, state_dir: Path) -> None:
    """Build the settings (errors raise before anything starts), then run until SIGTERM."""
    settings = cache_settings(topology, component, index, state_dir)
    endpoints = etcd_endpoints(topology, component)
    setup_logging(f"{component}/{index}")

    async def main() -> None:
        await run_agent(CacheAgent(settings, EtcdStore(endpoints, settings.dcs)))

    asyncio.run(main())
