"""Finding PostgreSQL and reading its data directory: clear errors, nothing deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from spofless.pg import slot_name
from spofless.pg._binaries import find_binaries
from spofless.pg._datadir import conf_value, data_version, parse_controldata
from spofless.pg._errors import PgSetupError


def test_no_postgresql_installed_names_what_and_how(tmp_path: Path) -> None:
    with pytest.raises(PgSetupError, match=r"PostgreSQL 15 or newer not found.*system-deps"):
        find_binaries(root=tmp_path)


def test_too_old_postgresql_is_named(tmp_path: Path) -> None:
    (tmp_path / "13" / "bin").mkdir(parents=True)
    with pytest.raises(PgSetupError, match=r"found 13"):
        find_binaries(root=tmp_path)


def test_missing_tool_is_named(tmp_path: Path) -> None:
    bin_dir = tmp_path / "16" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("postgres", "initdb", "pg_basebackup", "pg_controldata"):
        (bin_dir / tool).touch()
    with pytest.raises(PgSetupError, match=r"lacks pg_rewind"):
        find_binaries(root=tmp_path)


def test_absent_and_empty_data_directories_hold_nothing(tmp_path: Path) -> None:
    assert data_version(tmp_path / "absent", 15) is None
    (tmp_path / "empty").mkdir()
    assert data_version(tmp_path / "empty", 15) is None


def test_foreign_directory_is_an_error_and_kept(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PgSetupError, match="not a PostgreSQL data directory"):
        data_version(tmp_path, 15)
    assert (tmp_path / "notes.txt").exists()


def test_wrong_major_version_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "PG_VERSION").write_text("14\n")
    with pytest.raises(PgSetupError, match=r"PostgreSQL 14 data directory.*PostgreSQL 15"):
        data_version(tmp_path, 15)


CONTROLDATA = """\
pg_control version number:            1300
Database system identifier:           7312345678901234567
Database cluster state:               shut down in recovery
Latest checkpoint location:           0/3000148
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/30001F8
"""


def test_controldata_is_parsed() -> None:
    cd = parse_controldata(CONTROLDATA)
    assert cd.state == "shut down in recovery"
    assert cd.timeline == 2
    assert cd.checkpoint_lsn == 0x3000148
    assert cd.min_recovery_lsn == 0x30001F8
    assert cd.system_identifier == "7312345678901234567"


def test_conf_values_are_quoted() -> None:
    assert conf_value(True) == "on"
    assert conf_value(5432) == "5432"
    assert conf_value("host=x application_name='b'") == "'host=x application_name=''b'''"


def test_slot_names_are_valid_identifiers() -> None:
    assert slot_name("pg-1.East") == "spofless_pg_1_east"
