"""Automatic region promotion in the lab: a third-region witness decides, never two
writable regions (spofless.pg._region).

`spofless up --lab` of two PostgreSQL clusters, `db` in us (primary) and `db_eu` in eu
(`standby_of: db`, `auto_promote` on), two members each with their own one-member etcd,
and a quorum etcd of three members, one per region (us, eu, witness). A writer in each
application region (libpq multi-host over all four members, its own region's first).
First eu is cut off for longer than the region lease's ttl: without the quorum's majority it
never promotes, and us keeps writing. Then region us is cut off while every process in it
keeps running: eu is promoted by itself;
no member of us acknowledges a write after eu acknowledged its first, and none is
writable (asked over SQL from inside us) once eu is. The cut is healed: us comes back
as the standby cluster of eu by itself (its leader rewound and streaming from eu, its
replica streaming). Needs root and network namespaces (skips with the reason elsewhere).
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_fixtures import require_lab
from pg_cluster import require_postgres_and_etcd
from stack_fixtures import StackRun, pg_lab_stack_run
from waiting import wait_for

from spofless.lab import Lab
from spofless.security import client_params
from spofless.topology import load_topology

pytestmark = [pytest.mark.integration, pytest.mark.lab]

US_PORT, EU_PORT = 5432, 6432  # an acknowledgement's port says which cluster gave it
US_PORTS, EU_PORTS = (US_PORT, US_PORT + 1), (EU_PORT, EU_PORT + 1)  # instance i: port + i
TOPOLOGY = f"""\
name: regionwitness
security: {{tls: false}}
regions:
  us: {{zones: [a]}}
  eu: {{zones: [a]}}
  witness: {{zones: [a]}}
hosts:
  us1: {{zone: us/a}}
  us2: {{zone: us/a}}
  eu1: {{zone: eu/a}}
  eu2: {{zone: eu/a}}
  w1: {{zone: witness/a}}
  appus: {{zone: us/a}}
  appeu: {{zone: eu/a}}
lab:
  links:
    zone: {{latency_ms: 0}}
    region: {{latency_ms: 5}}
components:
  etcd_us: {{kind: etcd, instances: [us1], port: 2379, peer_port: 2390}}
  etcd_eu: {{kind: etcd, instances: [eu1], port: 2479, peer_port: 2490}}
  quorum:
    kind: etcd
    instances: [us2, eu2, w1]
    min_up: majority
    port: 2579
    peer_port: 2590
  db:
    kind: postgres
    instances: [us1, us2]
    needs: [etcd_us]
    port: {US_PORT}
    api_port: 8008
  db_eu:
    kind: postgres
    instances: [eu1, eu2]
    needs: [etcd_eu]
    standby_of: db
    auto_promote: {{quorum: quorum, ttl: 6}}
    port: {EU_PORT}
    api_port: 8108
  app:
    kind: service
    instances: [appus, appeu]
    needs: [db, db_eu]
    port: 8000
entry: [app]
"""
WRITER = str(Path(__file__).with_name("lab_sql_writer.py"))
WRITE_FOR = 240.0  # at most: the test stops the writers (SIGTERM) once us has rejoined


@pytest.fixture
def region_lab() -> Iterator[tuple[StackRun, Lab]]:
    require_lab()
    require_postgres_and_etcd()
    with pg_lab_stack_run(TOPOLOGY, "spofless-regionlab-", "regionwitness") as (run, lab):
        yield run, lab


class Sql:
    """libpq strings to the members, and questions asked from inside a region."""

    def __init__(self, run: StackRun, lab: Lab) -> None:
        self.lab = lab
        self.auth = client_params(load_topology(run.topology), "db")
        self.address = {
            i["host"]: i["address"]
            for i in run.status()["instances"]
            if i["component"] in ("db", "db_eu")
        }

    def dsn(self, hosts: list[str], rw: bool = True) -> str:
        members = [self.address[h] for h in hosts]
        params = {
            "host": ",".join(m.rpartition(":")[0] for m in members),
            "port": ",".join(m.rpartition(":")[2] for m in members),
            "user": "postgres",
            "dbname": "postgres",
            "connect_timeout": "1",
            **({"target_session_attrs": "read-write"} if rw else {}),
            **self.auth,
        }
        return " ".join(f"{k}={v}" for k, v in params.items())

    def ask(self, app: str, *args: str, timeout: float = 30) -> Any:
        argv = self.lab.argv(app, [sys.executable, WRITER, *args])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            return None
        return json.loads(out.stdout) if out.stdout.strip() else True

    def streaming(self, app: str, host: str) -> tuple[bool, int | None]:
        """(in recovery and streaming, the port it streams from) of one member."""
        row = self.ask(app, "--streaming", self.dsn([host], rw=False), timeout=15)
        return (bool(row and row[0] and row[1]), row[2] if row else None)

    def writable(self, app: str, host: str) -> bool:
        row = self.ask(app, "--streaming", self.dsn([host], rw=False), timeout=15)
        return bool(row is not None and row is not True and not row[0])


def popen_in(lab: Lab, host: str, *args: str) -> subprocess.Popen[str]:
    return lab.popen(
        host,
        [sys.executable, WRITER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: dict[str, subprocess.Popen[str]]) -> dict[str, Any]:
    """Stop them all (SIGTERM), then read each one's report."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    reports = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # its threads' stacks on stderr
            time.sleep(1)
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"{name} did not stop: {err[-3000:]}") from None
        assert proc.returncode == 0, err[-2000:]
        reports[name] = json.loads(out)
    return reports


def test_a_cut_off_primary_region_is_replaced_by_itself_and_rejoins_as_a_standby(
    region_lab: tuple[StackRun, Lab],
) -> None:
    run, lab = region_lab
    started = time.monotonic()
    up = run.cli(
        "up", "--lab", "--detach", "--wait", "--allow-spof", "--timeout", "180", timeout=260
    )
    assert up.returncode == 0, up.stdout + up.stderr
    sql = Sql(run, lab)
    wait_for(
        "us writable", lambda: sql.writable("appus", "us1") or sql.writable("appus", "us2"), 90
    )
    wait_for(
        "eu's two members streaming",
        lambda: all(sql.streaming("appeu", h)[0] for h in ("eu1", "eu2")),
        120,
    )
    assert sql.ask("appus", "--create", sql.dsn(["us1", "us2"])) is True
    everyone = ["us1", "us2", "eu1", "eu2"]
    ready = {r: run.state_dir.parent / f"ready-{r}" for r in ("us", "eu")}
    procs = {
        "us": popen_in(lab, "appus", sql.dsn(everyone), "1", str(WRITE_FOR), str(ready["us"])),
        "eu": popen_in(
            lab,
            "appeu",
            sql.dsn(["eu1", "eu2", "us1", "us2"]),
            "10000000",
            str(WRITE_FOR),
            str(ready["eu"]),
        ),
        "poll": popen_in(
            lab,
            "appus",
            "--writable",
            str(WRITE_FOR),
            sql.dsn(["us1"], rw=False),
            sql.dsn(["us2"], rw=False),
        ),
    }
    try:
        wait_for("both writers writing", lambda: all(f.exists() for f in ready.values()), 60)
        ready_at = time.monotonic()
        # The standby region cut off, longer than the region lease's ttl: it cannot write to
        # the quorum (a minority), so it never promotes; us keeps writing.
        eu_cut_at = time.monotonic()
        lab.cut("region:eu")
        while time.monotonic() < eu_cut_at + 8:
            assert not sql.writable("appeu", "eu1") and not sql.writable("appeu", "eu2"), (
                "eu promoted itself without the quorum"
            )
            time.sleep(0.5)
        eu_healed_at = time.monotonic()
        lab.restore()
        wait_for(
            "eu streaming again",
            lambda: all(sql.streaming("appeu", h)[0] for h in ("eu1", "eu2")),
            60,
        )
        time.sleep(2)  # writes before the cut
        cut_at = time.monotonic()
        lab.cut("region:us")
        wait_for(
            "eu promoted by itself",
            lambda: sql.writable("appeu", "eu1") or sql.writable("appeu", "eu2"),
            60,
        )
        promoted_at = time.monotonic()
        time.sleep(2)  # eu takes writes while us is still cut off
        healed_at = time.monotonic()
        lab.restore()

        seen: list[object] = []

        def rejoined() -> bool:
            us = [sql.streaming("appus", h) for h in ("us1", "us2")]
            seen[:] = [us]
            return all(ok for ok, _ in us) and any(port in EU_PORTS for _, port in us)

        try:
            wait_for("us rejoined as eu's standby cluster", rejoined, 120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen (streaming, from port): {seen}") from None
        rejoined_at = time.monotonic()
        reports = finish(procs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)

    acks = sorted(
        (at, port, ident) for r in (reports["us"], reports["eu"]) for ident, port, at in r["acks"]
    )
    eu_first = min(at for at, port, _ in acks if port in EU_PORTS)
    late_us = [a for a in acks if a[1] in US_PORTS and a[0] > eu_first]
    writable_us = [at for at, _ in reports["poll"]]
    late_writable = [at - eu_first for at in writable_us if at > eu_first]
    us_acked = {ident for _, port, ident in acks if port in US_PORTS}
    eu_holds = set(sql.ask("appeu", "--ids", sql.dsn(["eu1", "eu2"])))
    lost = sorted(us_acked - eu_holds)
    us_last = max(at for at, port, _ in acks if port in US_PORTS)
    lost_at = [at for at, port, ident in acks if port in US_PORTS and ident in set(lost)]
    print(
        f"\n[region lab] up and ready {ready_at - started:.1f}s; "
        f"cut -> eu's first write {eu_first - cut_at:.1f}s "
        f"(eu writable seen {promoted_at - cut_at:.1f}s); us's last ack "
        f"{us_last - cut_at:+.1f}s after the cut; us's last writable "
        f"{(max(writable_us) - cut_at) if writable_us else float('nan'):+.1f}s; "
        f"heal -> us rejoined {rejoined_at - healed_at:.1f}s; acknowledged {len(acks)}, "
        f"lost (acknowledged by us, not on eu) {len(lost)}"
        + (
            f", acknowledged {min(lost_at) - cut_at:+.1f}s to {max(lost_at) - cut_at:+.1f}s "
            "after the cut"
            if lost_at
            else ""
        )
    )
    assert eu_first - cut_at < 45, "eu was not promoted within the bound"
    # us's acknowledgements while only eu was cut off: no gap of 3 s or more.
    us_acks = [at for at, port, _ in acks if port in US_PORTS and at > eu_cut_at - 1]
    during = [(a, b) for a, b in itertools.pairwise(us_acks) if a < eu_healed_at]
    assert during and max(b - a for a, b in during) < 3, "us stopped while only eu was cut"
    assert late_us == [], f"us acknowledged writes after eu's first: {late_us[:5]}"
    assert late_writable == [], f"us writable after eu acknowledged: {late_writable[:5]}"
    assert len(reports["us"]["acks"]) > 20 and len(reports["eu"]["acks"]) > 20
    # Every write eu acknowledged is kept; us's lost ones were all acknowledged before the cut.
    eu_acked = {ident for _, port, ident in acks if port in EU_PORTS}
    assert eu_acked <= eu_holds
    assert all(at < eu_first for at in lost_at)
