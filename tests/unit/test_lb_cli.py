"""`spofless lb` flags: bad ones give a message naming them and exit status 2, nothing runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from spofless.cli import main
from spofless.cli._lb import _unescape

BASE = ["lb", "--listen", "127.0.0.1:1", "--backend", "127.0.0.1:2"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "bogus=1"], "invalid option bogus"),
        (["--set", "header_timeout=soon"], "invalid option header_timeout"),
        (["--set", "header_timeout"], "give NAME=VALUE"),
        (["--health", "http", "--health-expect", "ok"], "belong to health checks of type tcp"),
        (["--health-send", "PING"], "needs `expect`"),
        (["--admin", "0.0.0.0:8081"], "set an admin token"),
        (["--backend", "nowhere"], "is not host:port"),
        (["--set", "proxy_protocol=v1"], "proxy_protocol is for tcp mode"),
        (["--mode", "tcp", "--set", "proxy_protocol=v3"], "invalid option proxy_protocol"),
        (["--backup", "127.0.0.1:2"], "the same address is given twice"),
        (["--backup", "127.0.0.1:3,x"], "--backup: weight 'x' is not a number"),
        (["--set", "slow_start=2h"], "invalid option slow_start"),
    ],
)
def test_bad_flags_exit_2(extra: list[str], message: str) -> None:
    result = CliRunner().invoke(main, [*BASE, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_backups_alone_are_refused() -> None:
    args = ["lb", "--listen", "127.0.0.1:1", "--backup", "127.0.0.1:2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "no primary to stand in for" in result.output


def test_standalone_flags_are_refused_with_a_file() -> None:
    result = CliRunner().invoke(main, ["lb", "t.yaml", "--component", "lb", "--set", "x=1"])
    assert result.exit_code == 2 and "standalone" in result.output


def test_escapes_typed_on_a_command_line() -> None:
    assert _unescape(r"PING\r\n") == "PING\r\n"
    assert _unescape(r"a\\n\tb\x") == "a\\n\tb\\x"
