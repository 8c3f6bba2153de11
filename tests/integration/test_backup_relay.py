"""The WAL relay: PostgreSQL running as `postgres` archives and restores WAL through the
agent's process (root) without being able to run spofless, read the key or write the
repository (spofless.backup._relay)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from backup_pg import BIN, as_pg, stop_pg
from free_ports import free_port
from pg_fixtures import pg_base_dir  # noqa: F401

from spofless.backup import backup_config, latest_drill, take_backup
from spofless.pg import archive_settings, uses_wal_relay, wal_relay
from spofless.topology import load_topology

pytestmark = pytest.mark.integration


def _sql(port: int, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", autocommit=True, connect_timeout=5
    ) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def test_postgres_archives_through_the_relay_as_its_own_user(pg_base_dir: Path) -> None:  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("the relay serves PostgreSQL running as another OS user: needs root")
    base = pg_base_dir
    pg = pwd.getpwnam("postgres")
    # Out of the postgres user's reach: the key (root, 0600) and the repository (root, 0700).
    key = base / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    repo = base / "repo"
    repo.mkdir(mode=0o700)
    port = free_port()
    topology_file = base / "shop.yaml"
    topology_file.write_text(
        f"""name: shop
components:
  db:
    kind: postgres
    instances: 1
    port: {port}
    backup:
      repositories: [{{type: fs, path: {repo}}}]
      encryption: {{key_file: {key}}}
entry: [db]
"""
    )
    topology = load_topology(topology_file)
    state = base / "state"
    (state / "data").mkdir(parents=True)
    os.chown(state / "data", pg.pw_uid, pg.pw_gid)
    data = state / "data" / "db-0"
    assert uses_wal_relay(topology, "db")
    settings = archive_settings(topology, "db", data)
    assert settings["archive_command"].startswith("/bin/sh ")
    assert "wal.sh" in settings["restore_command"]

    # Without the relay: the postgres user cannot archive (it cannot read the key, and
    # cannot run an interpreter under /root either).
    direct = archive_settings(load_topology(topology_file), "db")["archive_command"]
    seg = base / "000000010000000000000001"
    seg.write_bytes(b"\0" * 16)
    os.chown(seg, pg.pw_uid, pg.pw_gid)
    cmd = direct.replace("%p", str(seg)).replace("%f", seg.name)
    out = as_pg(["/bin/sh", "-c", cmd])
    assert out.returncode != 0

    assert (
        as_pg([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]).returncode
        == 0
    )
    with (data / "postgresql.conf").open("a") as f:
        for k, v in settings.items():
            f.write(f"{k} = '{v}'\n")
    relay = wal_relay(topology, "db", 0, state)
    assert relay is not None
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {base}"
    try:
        with relay:
            out = as_pg(
                [
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    opts,
                    "-l",
                    f"{data}.log",
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
            assert out.returncode == 0, out.stderr + out.stdout
            _sql(port, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
            name = str(_sql(port, "SELECT pg_walfile_name(pg_switch_wal())")[0][0])
            deadline = time.monotonic() + 60
            while _sql(port, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0] != name:
                failed = _sql(port, "SELECT last_failed_wal, failed_count FROM pg_stat_archiver")
                assert time.monotonic() < deadline, f"{name} not archived in 60s: {failed}"
                time.sleep(0.1)
            store = backup_config(topology).stores[0]
            assert name in store.wal_names()
            archived = store.read(store.wal_key(name))
            assert archived == (data / "pg_wal" / name).read_bytes()

            # restore_command, as the postgres user: the segment comes back, owned by it.
            script = settings["restore_command"].split()[1]
            dest = data / "pg_wal" / "RECOVERYXLOG"
            out = as_pg(["/bin/sh", script, "restore", name, str(dest)])
            assert out.returncode == 0, out.stderr
            assert dest.read_bytes() == archived and dest.stat().st_uid == pg.pw_uid
            # %p relative to the data directory (a standby's), with a stale $PWD.
            rel = f"cd {data} && PWD=/ sh {script} restore {name} pg_wal/RECOVERYHISTORY"
            out = as_pg(["/bin/sh", "-c", rel])
            assert out.returncode == 0, out.stderr
            assert (data / "pg_wal" / "RECOVERYHISTORY").read_bytes() == archived
            # Not archived: exit 1 (end of archive), nothing written.
            missing = "0000000100000000000000FF"
            out = as_pg(["/bin/sh", script, "restore", missing, str(dest) + "2"])
            assert out.returncode == 1 and "not in the archive" in out.stderr
            assert not Path(str(dest) + "2").exists()
            # Outside pg_wal: refused, nothing written.
            outside = base / "stolen"
            out = as_pg(["/bin/sh", script, "restore", name, str(outside)])
            assert out.returncode == 1 and "refusing" in out.stderr
            assert not outside.exists()
            # A file that is not PostgreSQL's user's: not archived.
            os.symlink(key, data / "pg_wal" / missing)
            out = as_pg(
                ["/bin/sh", "-c", f"cd {data} && sh {script} archive pg_wal/{missing} {missing}"]
            )
            assert out.returncode == 1
            assert missing not in store.wal_names()
            os.unlink(data / "pg_wal" / missing)

            # A backup, then verify --restore and a drill: the scratch instance (postgres)
            # replays from the prefetched spool, with no access to spofless or the key.
            take_backup(backup_config(topology), "full")
            _sql(port, "INSERT INTO t VALUES (2)")
            _sql(port, "SELECT pg_switch_wal()")
            for args in (
                ["verify", str(topology_file), "--restore"],
                ["drill", str(topology_file)],
            ):
                out = subprocess.run(
                    [sys.executable, "-m", "spofless", "backup", *args],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert out.returncode == 0, out.stdout + out.stderr
            # The drill's figures, recorded as JSON in the state directory.
            assert "RTO" in out.stdout and "recorded in" in out.stdout
            record = json.loads(Path(out.stdout.split("recorded in ")[1].strip()).read_text())
            assert record["component"] == "db" and record["kind"] == "restore"
            assert set(record["phases"]) == {"restore_files", "fetch_wal", "replay", "first_query"}
            assert record["rto"] == pytest.approx(sum(record["phases"].values()))
            assert record["rpo"] is not None and record["rpo"] >= 0
            assert latest_drill(topology_file.parent / ".spofless" / "shop", "db") == record
        # The relay stopped: the client gives up (bounded), exit 1; shown with a short bound.
        short = (data.with_name("db-0.wal-relay") / "wal.sh").read_text()
        short = short.replace("bound=300", "bound=1")
        (base / "short.sh").write_text(short)
        quick = subprocess.run(
            ["/bin/sh", str(base / "short.sh"), "archive", "pg_wal/x", "000000010000000000000002"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=str(data),
        )
        assert quick.returncode == 1 and "no answer from the WAL relay" in quick.stderr
    finally:
        stop_pg(data)
