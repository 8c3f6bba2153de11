"""`spofless lab` without root: a clear message and exit status 2, nothing made."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spofless.cli import main
from spofless.lab import _netns


@pytest.mark.parametrize(
    "args",
    [["up"], ["down"], ["fault", "F", "cut", "h1"]],
)
def test_without_root_the_lab_says_so_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    file = tmp_path / "t.yaml"
    file.write_text(
        "name: t\nhosts: {h1: {}}\ncomponents: {a: {kind: x, instances: [h1]}}\nentry: [a]\n"
    )
    monkeypatch.setattr(_netns.os, "geteuid", lambda: 1000)
    argv = [
        "lab",
        "--state-dir",
        str(tmp_path / "s"),
        *[str(file) if a == "F" else a for a in args],
    ]
    if args[0] in ("up", "down"):
        argv.append(str(file))
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert "needs root" in result.output
    assert not (tmp_path / "s").exists()


def test_an_invalid_file_is_reported_before_anything_is_made(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("name: t\ncomponents: {}\nentry: [a]\nlab: {subnet: 1.2.3.0/24}\n")
    result = CliRunner().invoke(main, ["lab", "--state-dir", str(tmp_path / "s"), "up", str(file)])
    assert result.exit_code == 2
    assert "lab.subnet" in result.output
