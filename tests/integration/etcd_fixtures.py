"""A real 3-member etcd cluster on free loopback ports, always stopped.

Use from a test module (pytest puts this directory on sys.path):

    import etcd_fixtures

    etcd_cluster = etcd_fixtures.etcd_cluster  # the fixture, in this module

    def test_x(etcd_cluster: RunningCluster) -> None: ...
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from free_ports import free_ports

from spofless.dcs import DCSSettings, EtcdTls
from spofless.dcs.etcd_server import EtcdCluster, EtcdProcess, local_cluster


class RunningCluster:
    """A started cluster: its description, one process per member, fault helpers.

    With members over TLS, `client_tls` is the certificate the helpers present."""

    def __init__(
        self, cluster: EtcdCluster, base_dir: Path, client_tls: EtcdTls | None = None
    ) -> None:
        self.cluster = cluster
        self.client_tls = client_tls
        self.processes = {
            m.name: EtcdProcess(
                cluster, m.name, log_path=base_dir / f"{m.name}.log", client_tls=client_tls
            )
            for m in cluster.members
        }

    def settings(self, **timings: float) -> DCSSettings:
        """DCSSettings with `timings` and this cluster's client certificate."""
        return DCSSettings.model_validate({**timings, "tls": self.client_tls})

    @property
    def endpoints(self) -> list[str]:
        return self.cluster.client_urls

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.cluster.members]

    def start(self, timeout: float = 20.0) -> None:
        for p in self.processes.values():
            p.start()
        for p in self.processes.values():
            p.wait_healthy(timeout)

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def pause(self, name: str) -> None:
        self.processes[name].signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].signal(signal.SIGCONT)

    def restart(self, name: str, timeout: float = 20.0) -> None:
        """Start a killed or stopped member again (same data dir) and wait until healthy."""
        p = self.processes[name]
        p.stop()
        p.start()
        p.wait_healthy(timeout)

    def leader(self) -> str:
        """The name of the member that is the raft leader now (asked of a live member)."""
        verify = self.client_tls.client_context() if self.client_tls is not None else True
        for member in self.cluster.members:
            if not self.processes[member.name].running():
                continue
            try:
                status = httpx.post(
                    f"{member.client_url}/v3/maintenance/status",
                    json={},
                    timeout=2,
                    verify=verify,
                )
                listing = httpx.post(
                    f"{member.client_url}/v3/cluster/member/list",
                    json={},
                    timeout=2,
                    verify=verify,
                )
            except httpx.HTTPError:
                continue
            leader_id = status.json().get("leader")
            for m in listing.json().get("members", []):
                if m.get("ID") == leader_id:
                    return str(m["name"])
        raise RuntimeError("no live member knows a leader")

    def endpoints_starting_with(self, name: str) -> list[str]:
        """Every client URL, member `name`'s first (a client starts on the first)."""
        first = self.cluster.member(name).client_url
        return [first] + [url for url in self.endpoints if url != first]

    def stop_all(self) -> None:
        for p in self.processes.values():
            p.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{p.log_path.read_text(errors='replace')[-4000:]}"
            for name, p in self.processes.items()
            if p.log_path.exists()
        )


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[RunningCluster]:
    """A healthy 3-member etcd cluster; every member is stopped after the test."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd not installed (make system-deps installs etcd-server)")
    ports = free_ports(6)
    cluster = local_cluster(tmp_path / "etcd", ports[:3], ports[3:])
    running = RunningCluster(cluster, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop_all()
