"""`spofless pg ...` bad input: a clear message and exit status 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spofless.cli import main

TOPOLOGY = """\
name: t
components:
  db: {kind: postgres, instances: 2, port: 15432, needs: [etcd]}
  etcd: {kind: etcd, instances: 3, port: 12379}
entry: [db]
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agent", "{f}", "--component", "db", "--instance", "7"], "has instances 0..1, not 7"),
        (["agent", "{f}", "--component", "etcd", "--instance", "0"], "etcd is kind etcd"),
        (["agent", "{f}", "--component", "web", "--instance", "0"], "no postgres component 'web'"),
        (["switchover", "{f}", "--to", "db-9"], "no such member"),
        (["failover", "{f}", "--to", "db/9"], "--to db/9: no such member"),
        (["rejoin", "{f}", "--member", "db/9", "--discard"], "no member 'db/9'"),
        (["pause", "{f}", "--component", "etcd"], "etcd is kind etcd"),
        (["promote-region", "{f}", "--region", "mars"], "no region 'mars' (regions: none)"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TOPOLOGY)
    result = CliRunner().invoke(main, ["pg", *[a.format(f=f) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_members_are_named_as_status_shows_them_or_as_etcd_does() -> None:
    from spofless.pg.ops import Target, member_of

    t = Target("/p", ["http://127.0.0.1:1"], ["db-0", "db-1"])
    assert member_of(t, "db/1") == "db-1" and member_of(t, "db-0") == "db-0"


def test_failover_help_names_its_option() -> None:
    out = CliRunner().invoke(main, ["pg", "failover", "--help"]).output
    assert "CANDIDATE" not in out and "--to" in out and "db/1" in out


def test_promote_region_of_a_region_without_a_standby_cluster_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(TOPOLOGY.replace("name: t\n", "name: t\nregions: {us: {zones: [a]}}\n"))
    result = CliRunner().invoke(main, ["pg", "promote-region", str(f), "--region", "us"])
    assert result.exit_code == 2, result.output
    assert "no postgres cluster with a standby cluster" in result.output
