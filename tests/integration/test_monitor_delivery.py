"""One monitor's delivery against a real webhook: grouping, group_wait, repeat_interval,
the resolved notification, a failing receiver retried once the claim expires. The claims
are kept in the in-package MemoryStore (the etcd side is test_monitor_claims)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from monitor_fixtures import webhook_sink

from spofless.dcs import MemoryStore
from spofless.monitor import Monitor, monitor_settings
from spofless.topology import load_topology_text

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: deliver
security: {{tls: false}}  # a topology from text: no secrets; its etcd is plain
components:
  web: {{kind: service, instances: 2, port: 30100}}
  api: {{kind: service, instances: 2, port: 30200}}
  etcd: {{kind: etcd, instances: 1, port: 30300, peer_port: 30400}}
  monitor:
    kind: monitor
    instances: 2
    port: 30500
    group_by: {group_by}
    group_wait: {group_wait}
    repeat_interval: 0.5
    claim_ttl: 2
    receivers:
      - {{type: webhook, url: "{url}", format: json, timeout: 0.5, retries: 0}}
entry: [web, api]
"""


def monitor(tmp_path: Path, url: str, group_by: str = "[alertname]", wait: float = 0) -> Monitor:
    text = TOPOLOGY.format(url=url, group_by=group_by, group_wait=wait)
    settings = monitor_settings(load_topology_text(text), "monitor", 0, tmp_path, port=0)
    return Monitor(settings, store=MemoryStore())


async def test_grouping_repeat_and_resolved(tmp_path: Path) -> None:
    with webhook_sink() as sink:
        m = monitor(tmp_path, sink.url)
        m._analyse(frozenset({"instance:web/0", "instance:api/1"}), time.time())
        await m.deliver_once()
        (first,) = sink.bodies()  # both alerts in one notification: grouped by alertname
        assert first["group"] == {"alertname": "RedundancyLost"}
        assert sorted(a["component"] for a in first["alerts"]) == ["api", "web"]
        await m.deliver_once()
        assert len(sink.bodies()) == 1  # sent: not again
        await asyncio.sleep(0.6)
        await m.deliver_once()
        assert [b["status"] for b in sink.bodies()] == ["firing", "firing"]  # repeat_interval
        m._analyse(frozenset(), time.time())
        await m.deliver_once()
        last = sink.bodies()[-1]
        assert last["status"] == "resolved" and len(last["alerts"]) == 2
        m.history.close()


async def test_group_wait_and_a_failing_receiver(tmp_path: Path) -> None:
    with webhook_sink() as sink:
        m = monitor(tmp_path, sink.url, group_by="[alertname, component]", wait=0.3)
        m._analyse(frozenset({"instance:web/0"}), time.time())
        await m.deliver_once()
        assert sink.bodies() == []  # a new group waits group_wait for more
        await asyncio.sleep(0.35)
        await m.deliver_once()
        (body,) = sink.bodies()
        assert body["group"] == {"alertname": "RedundancyLost", "component": "web"}
        m.history.close()

    # Nothing listens now: the delivery fails and the claim stays; the notification is
    # tried again claim_ttl later (by another monitor once the claim expires, or by this
    # one, which retries its own claim).
    failing = monitor(tmp_path / "2", sink.url)
    failing._analyse(frozenset({"instance:api/0"}), time.time())
    await failing.deliver_once()
    (pending,) = failing.pending.values()
    assert pending[0].claimed > 0 and pending[0].due > time.time() + 1
    with webhook_sink() as sink2:
        failing.senders[0].receiver = failing.senders[0].receiver.model_copy(
            update={"url": sink2.url}
        )
        pending[0].due = 0.0  # as if claim_ttl had passed
        await failing.deliver_once()
        (body,) = sink2.bodies()
        assert body["alerts"][0]["component"] == "api"
    failing.history.close()
