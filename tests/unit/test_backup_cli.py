"""The `backup:` topology section and the backup commands' bad input (no PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spofless.cli import main
from spofless.topology import PostgresComponent, TopologyError, load_topology_text


def _topology(tmp_path: Path, backup: str, port: int = 1) -> Path:
    f = tmp_path / "t.yaml"
    f.write_text(
        f"name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n    port: {port}\n"
        f"    backup:\n{backup}entry: [db]\n"
    )
    return f


def _fs(tmp_path: Path, key: bool = True) -> str:
    (tmp_path / "repo").mkdir(exist_ok=True)
    text = f"      repositories: [{{type: fs, path: {tmp_path}/repo}}]\n"
    if key:
        text += f"      encryption: {{key_file: {tmp_path}/key}}\n"
    return text


def test_backup_section_defaults_and_forms() -> None:
    topo = load_topology_text(
        "name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n    port: 5432\n"
        "    backup:\n"
        "      repositories:\n        - {type: fs, path: /b}\n"
        "        - {type: s3, bucket: shop-backups, endpoint: 'http://127.0.0.1:9000',"
        " prefix: db/}\n"
        "      schedule: {full: '0 2 * * 0', incremental: '0 2 * * 1-6'}\n"
        "      retention: {full: 4, window: 14d}\n      compression: zstd\n"
        "      encryption: {key_file: /etc/k}\n      from: primary\nentry: [db]\n"
    )
    comp = topo.components["db"]
    assert isinstance(comp, PostgresComponent) and comp.backup is not None
    b = comp.backup
    assert [r.type for r in b.repositories] == ["fs", "s3"]
    assert b.retention.window == 14 * 86400 and b.retention.full == 4
    assert b.compression.type == "zstd" and b.compression.level == 3
    assert b.from_ == "primary" and b.encryption and b.encryption.key_file == "/etc/k"
    plain = load_topology_text(
        "name: t\ncomponents:\n  db: {kind: postgres, instances: 1, port: 1}\nentry: [db]\n"
    )
    assert isinstance(plain.components["db"], PostgresComponent)
    assert plain.components["db"].backup is None


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        ("      repositories: []\n", "repositories"),
        ("      repositories: [{type: fs, path: ' '}]\n", "must not be empty"),
        ("      repositories: [{type: fs, path: /b}]\n      retention: {window: 2y}\n", "duration"),
        ("      repositories: [{type: fs, path: /b}]\n      schedule: {full: 'daily'}\n", "full"),
        ("      repositories: [{type: ftp, path: /b}]\n", "type"),
        ("      repositories: [{type: fs, path: /b}]\n      encryption: {key: abc}\n", "key"),
    ],
)
def test_bad_backup_sections_name_the_field(backup: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        load_topology_text(
            "name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n    port: 1\n"
            f"    backup:\n{backup}entry: [db]\n"
        )


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    f = _topology(tmp_path, _fs(tmp_path))
    result = CliRunner().invoke(main, ["backup", "list", str(f)])
    assert result.exit_code == 2
    assert "cannot read key file" in result.output


def test_no_component_with_backup(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(
        "name: t\ncomponents:\n  db: {kind: postgres, instances: 1, port: 1}\nentry: [db]\n"
    )
    result = CliRunner().invoke(main, ["backup", "list", str(f)])
    assert result.exit_code == 2
    assert "0 postgres components have a `backup:` section" in result.output


def test_archive_and_restore_wal_exit_statuses(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(bytes(range(32)))
    f = _topology(tmp_path, _fs(tmp_path))
    seg = tmp_path / "000000010000000000000001"
    seg.write_bytes(b"wal" * 1000)
    run = CliRunner().invoke
    archive = ["backup", "archive-wal", str(f), "--component", "db", str(seg), seg.name]
    assert run(main, archive).exit_code == 0
    assert run(main, archive).exit_code == 0  # again, same content: success
    seg.write_bytes(b"other")
    result = run(main, archive)
    assert result.exit_code == 2 and "already archived with different content" in result.output
    out = tmp_path / "RECOVERYXLOG"
    restore = ["backup", "restore-wal", str(f), "--component", "db"]
    assert run(main, [*restore, seg.name, str(out)]).exit_code == 0
    assert out.read_bytes() == b"wal" * 1000
    assert run(main, [*restore, "000000010000000000000009", str(out)]).exit_code == 1
    obj = tmp_path / "repo" / "db" / "wal" / seg.name
    obj.write_bytes(obj.read_bytes()[:-1] + b"!")
    result = run(main, [*restore, "--strict", seg.name, str(out)])
    assert result.exit_code == 126 and "damaged" in result.output
    result = run(main, [*restore, seg.name, str(out)])  # a standby: streams instead
    assert result.exit_code == 1 and "damaged" in result.output


def test_restore_takes_one_target_and_backup_defaults_to_take(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(bytes(range(32)))
    f = _topology(tmp_path, _fs(tmp_path))
    run = CliRunner().invoke
    result = run(
        main, ["restore", str(f), "--target", "latest", "--target-lsn", "0/1", "--to", "x"]
    )
    assert result.exit_code == 2 and "give one of" in result.output
    result = run(main, ["restore", str(f), "--target", "latest", "--to", str(tmp_path / "r")])
    assert result.exit_code == 2 and "holds no backup" in result.output
    assert not (tmp_path / "r").exists()
    for where in ([], ["--to", str(tmp_path / "r"), "--as-cluster"]):
        result = run(main, ["restore", str(f), *where])
        assert result.exit_code == 2 and "give one of --to DIR and --as-cluster" in result.output
    state = tmp_path / "state"
    result = run(main, ["restore", str(f), "--as-cluster", "--state-dir", str(state)])
    assert result.exit_code == 2 and "holds no backup" in result.output
    assert not (state / "data" / "db-0").exists()
    result = run(main, ["restore", str(f), "--to", str(tmp_path / "r"), "--host", "h1"])
    assert result.exit_code == 2 and "--host goes with --as-cluster" in result.output
    result = run(main, ["restore", str(f), "--to", "x", "--tablespace-map", "space=/srv/s"])
    assert result.exit_code == 2 and "is not OID=DIR" in result.output
    # `spofless backup FILE` takes a backup: here nothing listens on port 1.
    result = run(main, ["backup", str(f), "--full"])
    assert result.exit_code == 2 and "no instance answered" in result.output


def test_postgres_settings_for_the_agent(tmp_path: Path) -> None:
    from spofless.backup import postgres_settings
    from spofless.topology._backup import BackupSpec

    spec = BackupSpec.model_validate(
        {"repositories": [{"type": "fs", "path": "/b"}], "command": ["/opt/py", "-m", "spofless"]}
    )
    f = tmp_path / "shop.yaml"
    got = postgres_settings(f, "db", spec, standby=True)
    assert got == {
        "archive_mode": "on",
        "archive_command": f"/opt/py -m spofless backup archive-wal {f} --component db %p %f",
        "restore_command": f"/opt/py -m spofless backup restore-wal {f} --component db %f %p",
    }


def test_the_relay_replaces_the_commands_unless_backup_command_is_set(tmp_path: Path) -> None:
    from spofless.backup import postgres_settings, relay_dir
    from spofless.topology._backup import BackupSpec

    relay = relay_dir(tmp_path / "data" / "db-0")
    assert relay == tmp_path / "data" / "db-0.wal-relay"
    plain = BackupSpec.model_validate({"repositories": [{"type": "fs", "path": "/b"}]})
    got = postgres_settings(tmp_path / "t.yaml", "db", plain, standby=True, relay=relay)
    assert got["archive_command"] == f"/bin/sh {relay}/wal.sh archive %p %f"
    assert got["restore_command"] == f"/bin/sh {relay}/wal.sh restore %f %p"
    told = BackupSpec.model_validate(
        {"repositories": [{"type": "fs", "path": "/b"}], "command": ["/opt/py", "-m", "spofless"]}
    )
    got = postgres_settings(tmp_path / "t.yaml", "db", told, relay=relay)
    assert got["archive_command"].startswith("/opt/py -m spofless backup archive-wal")


def test_a_component_without_port_cannot_be_backed_up(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(
        "name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n    backup:\n"
        f"      repositories: [{{type: fs, path: {tmp_path}}}]\nentry: [db]\n"
    )
    result = CliRunner().invoke(main, ["backup", "list", str(f)])
    assert result.exit_code == 2 and "needs `port`" in result.output


def test_sources_carry_the_topologys_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spofless.backup import backup_config
    from spofless.topology import load_topology

    f = tmp_path / "t.yaml"
    f.write_text(
        "name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 2\n    port: 7000\n"
        f"    backup:\n      repositories: [{{type: fs, path: {tmp_path}}}]\n"
        "security: {tls: false}\nentry: [db]\n"
    )
    # No secrets: connect as is (a server that trusts local connections).
    cfg = backup_config(load_topology(f))
    assert [(s.name, s.port, s.params) for s in cfg.sources] == [
        ("db/0", 7000, ()),
        ("db/1", 7001, ()),
    ]
    monkeypatch.setenv("SPOFLESS_SECRET_DB_SUPERUSER", "s3cret")
    cfg = backup_config(load_topology(f))
    assert cfg.sources[1].params == (("password", "s3cret"),)


def test_a_relative_fs_repository_is_relative_to_the_topology_file(tmp_path: Path) -> None:
    from spofless.backup import backup_config
    from spofless.topology import load_topology

    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "t.yaml"
    f.write_text(
        "name: t\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n    port: 1\n"
        "    backup:\n      repositories: [{type: fs, path: .spofless/t/backups}]\nentry: [db]\n"
    )
    (store,) = backup_config(load_topology(f)).stores
    assert store.name == str(tmp_path / "sub" / ".spofless" / "t" / "backups")


def test_restore_as_cluster_on_a_machine_without_member_0_marks_its_members(
    tmp_path: Path,
) -> None:
    """Members on several machines: the machine of member 0 restores it, every other
    marks its members clone-only (they clone member 0 once it runs, never initdb)."""
    from spofless.backup import Codec, FsRepository, Store
    from spofless.backup._manifest import Manifest

    (tmp_path / "key").write_bytes(bytes(range(32)))
    f = tmp_path / "t.yaml"
    f.write_text(
        "name: t\nhosts:\n  h1: {address: 127.0.0.1}\n  h2: {address: 127.0.0.1}\n"
        "  h3: {address: 127.0.0.1}\ncomponents:\n  db:\n    kind: postgres\n"
        "    instances: [h1, h2, h3]\n    port: 1\n    backup:\n" + _fs(tmp_path) + "entry: [db]\n"
    )
    run = CliRunner().invoke
    state = tmp_path / "state"
    base = ["restore", str(f), "--as-cluster", "--state-dir", str(state)]
    result = run(main, [*base, "--host", "h9"])
    assert (
        result.exit_code == 2 and "no such host" in result.output and "h1, h2, h3" in result.output
    )
    # No backup: refused on every machine, nothing written.
    result = run(main, [*base, "--host", "h2"])
    assert result.exit_code == 2 and "holds no backup" in result.output
    assert not state.exists()
    store = Store(FsRepository(tmp_path / "repo"), Codec(3, bytes(range(32))), "db")
    store.write_manifest(
        Manifest(
            label="20261205-000000F",
            kind="full",
            parent=None,
            component="db",
            source="db/0",
            pg_version="150000",
            system_identifier="1",
            timeline=1,
            start_lsn=0x1000028,
            stop_lsn=0x1000100,
            start_time=1.0,
            stop_time=2.0,
            wal_segment_size=16 << 20,
            backup_label="",
            directories=[],
            files=[],
        )
    )
    result = run(main, [*base, "--target", "immediate", "--host", "h2", "--host", "h3"])
    assert result.exit_code == 0, result.output
    assert "db-1 marked to clone the restored member 0" in result.output
    assert (state / "data" / "db-1.clone-only").is_file()
    assert (state / "data" / "db-2.clone-only").is_file()
    assert not (state / "data" / "db-1").exists() and not (state / "data" / "db-0").exists()
    # Several members on one machine cannot share a tablespace's directory.
    plain = store.manifest("20261205-000000F")
    store.write_manifest(plain.model_copy(update={"tablespaces": {"16385": "/srv/space"}}))
    result = run(main, [*base, "--target", "immediate", "--host", "h1", "--host", "h2"])
    assert result.exit_code == 2 and "cannot share" in result.output, result.output
    assert not (state / "data" / "db-0").exists()
    store.write_manifest(plain)
    # A member whose data directory exists is refused, as on one machine.
    (state / "data" / "db-1").mkdir()
    result = run(main, [*base, "--target", "immediate", "--host", "h2"])
    assert result.exit_code == 2 and "exists" in result.output
