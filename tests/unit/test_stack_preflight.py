"""`up`'s preflight: which directories keep PostgreSQL's OS user from its data dir."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from spofless.stack._preflight import unreachable_dirs

OTHER = pwd.struct_passwd(("pg", "x", 54321, 54321, "", "/nonexistent", "/bin/false"))


def test_a_0700_directory_on_the_way_is_named(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    blocked = unreachable_dirs(locked / "state" / "data" / "db-0", OTHER, umask=0o022)
    assert locked in blocked and tmp_path not in blocked


def test_traversable_directories_pass(tmp_path: Path) -> None:
    tmp_path.chmod(0o711)
    above = unreachable_dirs(tmp_path, OTHER)  # pytest's own folders may be 0700
    assert unreachable_dirs(tmp_path / "state" / "data" / "db-0", OTHER, umask=0o022) == above


def test_directories_up_will_create_follow_the_umask(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = tmp_path / "new" / "state" / "data" / "db-0"
    assert tmp_path / "new" in unreachable_dirs(target, OTHER, umask=0o077)
    assert tmp_path / "new" not in unreachable_dirs(target, OTHER, umask=0o022)


def test_the_owner_and_the_group_bits_count(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o710)
    owner = pwd.struct_passwd(("me", "x", os.geteuid(), 99999, "", "/", "/bin/false"))
    group = pwd.struct_passwd(("g", "x", 99998, d.stat().st_gid, "", "/", "/bin/false"))
    assert d not in unreachable_dirs(d / "x", owner)
    assert d not in unreachable_dirs(d / "x", group)
    assert d in unreachable_dirs(d / "x", OTHER)


def test_an_etcd_data_directory_made_over_http_is_refused_once_tls_is_on(tmp_path: Path) -> None:
    """etcd keeps its peers' URLs in its data directory: members made while they spoke
    http never form a cluster over https. `up` says so before starting anything."""
    import dataclasses

    from spofless.stack._errors import StackError
    from spofless.stack._etcd import record_scheme
    from spofless.stack._plan import InstancePlan
    from spofless.stack._preflight import _check_etcd_scheme

    data = tmp_path / "etcd-0"
    https = ("etcd", "--listen-peer-urls=https://127.0.0.1:2380")
    inst = InstancePlan(
        "etcd",
        0,
        None,
        "etcd",
        https,
        {},
        tmp_path,
        "127.0.0.1",
        (),
        None,
        None,
        tmp_path / "log",
        (),
        data_dir=data,
    )
    _check_etcd_scheme(inst)  # no directory yet: fine
    data.mkdir()
    record_scheme(data, https)  # a new directory records how its members speak
    (data / "member").mkdir()
    _check_etcd_scheme(inst)  # made over https, started over https: fine
    (data.with_name("etcd-0.scheme")).unlink()  # made before spofless recorded it: http
    with pytest.raises(
        StackError, match="made while the members spoke http; now they would speak https"
    ):
        _check_etcd_scheme(inst)
    plain = dataclasses.replace(inst, argv=("etcd", "--listen-peer-urls=http://127.0.0.1:2380"))
    _check_etcd_scheme(plain)


def test_ports_in_the_ephemeral_range_are_named_with_a_fix(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from spofless.stack._preflight import ephemeral_port_warning

    span, reserved = tmp_path / "range", tmp_path / "reserved"
    span.write_text("32768\t60999\n")
    reserved.write_text("58010\n")
    insts = [
        SimpleNamespace(component="db", ports=(("main", 54320 + i), ("api", 58008 + i)))
        for i in range(3)
    ]
    warning = ephemeral_port_warning(insts, span, reserved) or ""  # type: ignore[arg-type]
    assert "ephemeral port range 32768-60999" in warning
    assert "db's main port 54320-54322" in warning and "db's api port 58008-58009." in warning
    assert "ip_local_reserved_ports=54320-54322,58008-58009" in warning
    low = [SimpleNamespace(component="web", ports=(("main", 18080),))]
    assert ephemeral_port_warning(low, span, reserved) is None  # type: ignore[arg-type]
    assert ephemeral_port_warning(insts, tmp_path / "absent", reserved) is None  # type: ignore[arg-type]
