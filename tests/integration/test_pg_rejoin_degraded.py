"""Divergent WAL written while synchronous mode was degraded is never discarded by itself.

Synchronous (non-strict) mode: both replicas die, the primary degrades and
acknowledges writes alone, then it dies too. A replica is promoted without those
writes. When the old primary comes back, its divergent WAL may hold the only copy
of acknowledged commits: its agent keeps it out (`failed`, not healthy), names the
LSN range and the command; once the operator runs `spofless pg rejoin --discard`
it is rewound and streams again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pg_cluster import Node, PgCluster, start_cluster
from pg_nemesis import Nemesis

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with start_cluster(synchronous=True) as c:
        yield c


def _degraded(node: Node) -> bool:
    try:
        return bool(httpx.get(f"{node.api}/status", timeout=1.0).json().get("degraded"))
    except (httpx.HTTPError, ValueError):
        return False


def test_degraded_acknowledgements_keep_the_old_primary_out_until_the_operator_says(
    cluster: PgCluster,
) -> None:
    old = cluster.wait_healthy()
    replicas = [n for n in cluster.nodes if n is not old]
    for r in replicas:
        r.kill_node()
        r.wait_agent_exit()
    cluster.wait(lambda: _degraded(old), f"{old.name} degraded to asynchronous", 30)
    # Acknowledged by the old primary alone (its fence witness confirms while it leads).
    alone = list(range(-500, -490))
    for i in alone:
        old.query("INSERT INTO t (id) VALUES (%s)", (i,))
    old.kill_node()
    old.wait_agent_exit()
    for r in replicas:
        r.start()
    new = cluster.wait_new_primary(old, bound=60)
    present = {int(r[0]) for r in new.query("SELECT id FROM t WHERE id < 0")}
    assert present.isdisjoint(alone), "the replicas never received the degraded writes"

    old.start()

    def kept_out() -> bool:
        st = old.status()
        return st is not None and st.get("state") == "failed"

    cluster.wait(kept_out, f"{old.name} kept out", 60)
    st = old.status()
    assert st is not None
    assert "synchronous mode was degraded" in st["reason"], st["reason"]
    assert f"spofless pg rejoin FILE --member {old.name} --discard" in st["reason"]
    assert httpx.get(f"{old.api}/health", timeout=1.0).status_code == 503
    time.sleep(2)  # it stays out by itself
    assert (old.status() or {}).get("state") == "failed"

    spofless = Path(sys.executable).with_name("spofless")
    out = subprocess.run(
        [str(spofless), "pg", "rejoin", str(cluster.file), "--member", old.name, "--discard"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "may discard its divergent WAL" in out.stdout
    healed = Nemesis(cluster).wait_whole("the operator's discard", bound=60)
    print(f"\n{old.name} rejoined {healed:.1f}s after `pg rejoin --discard`")
    rows = {int(r[0]) for r in old.query("SELECT id FROM t WHERE id < 0")}
    assert rows.isdisjoint(alone)  # rewound: it holds exactly the primary's rows now


def test_rejoin_refuses_without_discard_and_names_bad_members(cluster: PgCluster) -> None:
    spofless = Path(sys.executable).with_name("spofless")
    no_flag = subprocess.run(
        [str(spofless), "pg", "rejoin", str(cluster.file), "--member", "db-0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert no_flag.returncode == 2 and "--discard" in no_flag.stderr
    unknown = subprocess.run(
        [str(spofless), "pg", "rejoin", str(cluster.file), "--member", "db/9", "--discard"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert unknown.returncode == 2 and "no member 'db/9'" in unknown.stderr
