"""etcd members and clusters: what to run (pure) and a small process helper.

`EtcdCluster` describes one cluster (its members, token, raft timings);
`etcd_command(cluster, name)` builds the command line of one member. Both
are pure, so the stack runner, the tests and the docs build the same
command. `EtcdProcess` starts one member, waits (bounded) until its
`/health` endpoint answers, and stops it (SIGTERM, then SIGKILL after a
bound).

`/health` answers `{"health":"true"}` only once the member has a leader and
can serve a quorum read: start every member of a new cluster first, then
wait for each.

A member with `tls` serves clients and peers over https only, with its
certificate, and accepts only clients and peers that present a certificate
from its CA (`--client-cert-auth`, `--peer-client-cert-auth`): a client
without one, with one from another CA, or speaking plain http is refused.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spofless.dcs._tls import EtcdTls
from spofless.errors import SpoflessError

logger = logging.getLogger(__name__)

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "EtcdProcess",
    "EtcdProcessError",
    "etcd_command",
    "local_cluster",
    "member_healthy",
]


class EtcdProcessError(SpoflessError):
    """An etcd member could not be started or did not become healthy in time."""


class EtcdMember(BaseModel):
    """One member: its unique name, data directory, client URL and peer URL, and with
    `tls` its certificate (https URLs) for clients and peers alike."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    data_dir: Path
    client_url: str  # e.g. http://127.0.0.1:2379: where clients connect
    peer_url: str  # e.g. http://127.0.0.1:2380: where members talk raft
    tls: EtcdTls | None = None  # its certificate and the CA of its clients and peers

    @model_validator(mode="after")
    def _urls(self) -> Self:
        scheme = "https" if self.tls is not None else "http"
        for field in ("client_url", "peer_url"):
            url = urlsplit(getattr(self, field))
            if url.scheme != scheme or not url.hostname or url.port is None:
                raise ValueError(
                    f"{field} of member {self.name!r} must be {scheme}://host:port "
                    f"({'with' if self.tls else 'without'} tls), got {getattr(self, field)!r}"
                )
        return self


class EtcdCluster(BaseModel):
    """One etcd cluster: its members and the settings they share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    members: Annotated[tuple[EtcdMember, ...], Field(min_length=1)]
    token: Annotated[str, Field(min_length=1)] = "spofless"
    # `new` bootstraps a cluster; `existing` joins a member added with `member add`.
    # A member whose data dir already holds a cluster ignores both.
    state: Literal["new", "existing"] = "new"
    # Members share a machine or a LAN: a round trip is well under a millisecond, so
    # raft can notice a dead leader 2x faster than etcd's defaults (100/1000 ms)
    # while leaving 10 heartbeats per election timeout for a loaded, shared CPU.
    heartbeat_interval_ms: Annotated[int, Field(ge=10, le=10_000)] = 50
    election_timeout_ms: Annotated[int, Field(ge=100, le=50_000)] = 500
    # Watchers asking for progress hear from an idle member this often, so a client
    # notices a silent (stopped, cut off) member within a few seconds.
    watch_progress_interval_s: Annotated[float, Field(gt=0, le=600)] = 2.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        urls = [m.client_url for m in self.members] + [m.peer_url for m in self.members]
        if len(set(urls)) != len(urls):
            raise ValueError(f"client and peer URLs must all differ, got {urls}")
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ValueError(
                f"election_timeout_ms ({self.election_timeout_ms}) must be at least 5 x "
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}); raise the election "
                "timeout or lower the heartbeat"
            )
        return self

    @property
    def initial_cluster(self) -> str:
        """The `--initial-cluster` value: name=peer_url,... for every member."""
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def member(self, name: str) -> EtcdMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no member {name!r} in cluster (members: {[m.name for m in self.members]})")


def local_cluster(
    base_dir: Path,
    client_ports: Sequence[int],
    peer_ports: Sequence[int],
    *,
    host: str = "127.0.0.1",
    name_prefix: str = "etcd",
    tls: EtcdTls | None = None,
    **settings: object,
) -> EtcdCluster:
    """A cluster of len(client_ports) members on one host, data under base_dir/<name>;
    with `tls` (the host's certificate), over https with client certificates."""
    if len(client_ports) != len(peer_ports):
        raise ValueError("need one peer port per client port")
    scheme = "https" if tls is not None else "http"
    members = tuple(
        EtcdMember(
            name=f"{name_prefix}{i}",
            data_dir=base_dir / f"{name_prefix}{i}",
            client_url=f"{scheme}://{host}:{cport}",
            peer_url=f"{scheme}://{host}:{pport}",
            tls=tls,
        )
        for i, (cport, pport) in enumerate(zip(client_ports, peer_ports, strict=True))
    )
    return EtcdCluster.model_validate({"members": members, **settings})


def etcd_command(cluster: EtcdCluster, name: str, *, binary: str = "etcd") -> list[str]:
    """The command line that runs member `name` of `cluster`."""
    m = cluster.member(name)
    client_listen = _listen_url(m.client_url)
    peer_listen = _listen_url(m.peer_url)
    progress_ms = round(cluster.watch_progress_interval_s * 1000)
    tls: list[str] = []
    if m.tls is not None:
        tls = [
            f"--cert-file={m.tls.cert}",
            f"--key-file={m.tls.key}",
            f"--trusted-ca-file={m.tls.ca}",
            "--client-cert-auth=true",
            f"--peer-cert-file={m.tls.cert}",
            f"--peer-key-file={m.tls.key}",
            f"--peer-trusted-ca-file={m.tls.ca}",
            "--peer-client-cert-auth=true",
        ]
    return [
        binary,
        f"--name={m.name}",
        f"--data-dir={m.data_dir}",
        f"--listen-client-urls={client_listen}",
        f"--advertise-client-urls={m.client_url}",
        f"--listen-peer-urls={peer_listen}",
        f"--initial-advertise-peer-urls={m.peer_url}",
        f"--initial-cluster={cluster.initial_cluster}",
        f"--initial-cluster-state={cluster.state}",
        f"--initial-cluster-token={cluster.token}",
        f"--heartbeat-interval={cluster.heartbeat_interval_ms}",
        f"--election-timeout={cluster.election_timeout_ms}",
        # A member that was stopped or cut off must not depose a healthy leader
        # with a higher term when it comes back.
        "--pre-vote=true",
        f"--experimental-watch-progress-notify-interval={progress_ms}ms",
        "--logger=zap",
        "--log-outputs=stderr",
        "--log-level=warn",
        *tls,
    ]


def _listen_url(url: str) -> str:
    # etcd listens on an IP, not a name; listening on localhost's IP keeps a test
    # cluster unreachable from outside.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    return f"{parts.scheme}://{host}:{parts.port}"


def member_healthy(client_url: str, *, timeout: float = 1.0, tls: EtcdTls | None = None) -> bool:
    """Whether the member at client_url says it is healthy (has a leader, quorum read works);
    `tls`: the client certificate a member with TLS asks for."""
    try:
        verify = tls.client_context() if tls is not None else True
        r = httpx.get(f"{client_url}/health", timeout=timeout, verify=verify)
    except (httpx.HTTPError, OSError):
        return False
    try:
        return r.status_code == 200 and r.json().get("health") == "true"
    except ValueError:
        return False


class EtcdProcess:
    """One running etcd member, started by us (never adopts a process it did not start).

    Its health is asked with `client_tls`, by default the member's own certificate
    (spofless's host certificates are client certificates too)."""

    def __init__(
        self,
        cluster: EtcdCluster,
        name: str,
        *,
        binary: str = "etcd",
        log_path: Path | None = None,
        client_tls: EtcdTls | None = None,
    ) -> None:
        self.cluster = cluster
        self.member = cluster.member(name)
        self.client_tls = client_tls or self.member.tls
        self.command = etcd_command(cluster, name, binary=binary)
        self.log_path = log_path or self.member.data_dir.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the member (does not wait for health; see wait_healthy)."""
        if self.running():
            return
        self.member.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the parent's terminal is ours to relay
            )
        except OSError as exc:
            raise EtcdProcessError(f"cannot run etcd member {self.member.name}: {exc}") from exc
        finally:
            log.close()
        logger.info("etcd %s started pid=%s", self.member.name, self._proc.pid)

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until /health answers true; raise EtcdProcessError after timeout or on exit."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise EtcdProcessError(
                    f"etcd member {self.member.name} exited (status {code}); see {self.log_path}"
                )
            if member_healthy(self.member.client_url, timeout=0.5, tls=self.client_tls):
                return
            if time.monotonic() >= deadline:
                raise EtcdProcessError(
                    f"etcd member {self.member.name} not healthy after {timeout:g}s "
                    f"at {self.member.client_url}; see {self.log_path}"
                )
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        """Send sig to the member (SIGKILL, SIGSTOP, SIGCONT, ...) if it runs."""
        if self.running() and self._proc is not None:
            os.kill(self._proc.pid, sig)

    def kill(self) -> None:
        """kill -9 the member and reap it (no graceful shutdown: a crash)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
            logger.info("etcd %s killed", self.member.name)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop gracefully (SIGCONT+SIGTERM), SIGKILL after timeout; return the exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            # A stopped process cannot act on SIGTERM.
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    break
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "etcd %s ignored SIGTERM for %gs, killing", self.member.name, timeout
                )
                proc.kill()
                proc.wait(timeout)
        logger.info("etcd %s stopped status=%s", self.member.name, proc.returncode)
        return proc.returncode
