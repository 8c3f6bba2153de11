"""The monitor's look at a DNS server is a real query: a real `spofless dns` answering
for backends that are up is up; killed, it is down at once (nothing listens)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dns_fixtures import DnsProcess, Spawn, backend_spawner, dns_process_starter, lb_topology

from spofless.monitor import Target, probe, targets
from spofless.monitor._probe import http_client
from spofless.topology import load_topology_text

pytestmark = pytest.mark.integration


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    yield from backend_spawner()


@pytest.fixture
def start_dns(tmp_path: Path) -> Iterator[Callable[[str], DnsProcess]]:
    yield from dns_process_starter(tmp_path)


def test_a_dns_server_is_looked_at_with_a_query(
    spawn: Spawn, start_dns: Callable[[str], DnsProcess]
) -> None:
    lb_port, _ = spawn(["127.0.0.1", "127.0.0.1"])
    text = lb_topology(["127.0.0.1", "127.0.0.1"], lb_port)
    server = start_dns(text)
    (target,) = [t for t in targets(load_topology_text(text)) if t.how == "dns"]
    assert target.dns_name == "www.shop.example."
    # The server listens on the port it was given (0: any), not the file's.
    here = Target(target.instance, "dns", "127.0.0.1", server.port, dns_name=target.dns_name)

    async def look() -> tuple[bool, str, bool]:
        client = http_client()
        try:
            obs = await probe(here, 1.0, client)
        finally:
            await client.aclose()
        return obs.ok, obs.detail, obs.definite

    ok, detail, _ = asyncio.run(look())
    assert ok, detail
    assert detail.startswith("www.shop.example. -> 127.0.0.1")
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    ok, detail, _ = asyncio.run(look())
    assert not ok
