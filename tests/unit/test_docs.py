"""The documentation agrees with the code: it builds, its links hold, and every command
and option it names exists (and every command is in the README's table).

The site is built in-process with `mkdocs build --strict` (what `make docs` runs), so a
broken link or anchor fails here too; a deliberately broken copy shows that it would.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from markdown.extensions.toc import slugify

from spofless.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"


def build_site(config_file: Path, site_dir: Path) -> None:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    build(load_config(str(config_file), strict=True, site_dir=str(site_dir)))


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert (tmp_path / "site" / "topology" / "index.html").is_file()
    # The command reference is generated from the commands themselves.
    commands = (tmp_path / "site" / "commands" / "index.html").read_text()
    assert "spofless pg failover" in commands and "--to" in commands


@pytest.mark.parametrize(
    "broken",
    ["[the health checks](topology.md#no-such-section)", "[the design](DESIGN.md)"],
)
def test_a_broken_link_fails_the_build(
    tmp_path: Path, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    from mkdocs.exceptions import Abort

    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "README.md", copy / "benchmarks" / "README.md")
    page = copy / "docs" / "dns.md"
    page.write_text(page.read_text() + f"\nSee {broken}.\n")
    with caplog.at_level(logging.WARNING, logger="mkdocs"), pytest.raises(Abort):
        build_site(copy / "mkdocs.yml", tmp_path / "site")
    assert any(broken.split("(")[1].rstrip(")") in r.getMessage() for r in caplog.records)


def _anchors(page: Path) -> set[str]:
    """The heading anchors MkDocs gives a page (Python-Markdown's toc slugify)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {
        slugify(re.sub(r"[`*]", "", m.group(1)).strip(), "-")
        for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)
    }


def test_the_readmes_links_hold() -> None:
    # MkDocs checks docs/; the README is outside it, so check its relative links here.
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    assert links
    for link in links:
        if "://" in link:
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to {link}: no such file"
        if anchor:
            assert anchor in _anchors(target), f"README links to {link}: no such heading"


def _leaf_commands(
    cmd: click.Command = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield path


def _command_at(words: list[str]) -> tuple[list[click.Command], list[str]]:
    """The chain of commands `spofless WORDS...` reaches, and the words left over.

    A group's own arguments (`lab fault FILE cut`) are skipped to find the subcommand;
    `spofless backup FILE` is `backup take FILE`, as the group itself does.
    """
    chain: list[click.Command] = [main]
    rest = list(words)
    while isinstance(chain[-1], click.Group):
        group = chain[-1]
        found = next((i for i, w in enumerate(rest[:3]) if w in group.commands), None)
        if found is None:
            if group.name == "backup":
                chain.append(group.commands["take"])
                break
            return chain, rest
        chain.append(group.commands[rest[found]])
        rest = rest[:found] + rest[found + 1 :]
    return chain, rest


def _documented_invocations() -> Iterator[tuple[str, str]]:
    """(where, the words after `spofless`) of every command line the docs show."""
    for page in [README, *PAGES]:
        text = page.read_text()
        # Lines continued with a backslash are one command.
        text = re.sub(r"\\\n\s*", " ", text)
        for n, line in enumerate(text.splitlines(), 1):
            for m in re.finditer(r"(?:^|[\s`(|$\"/])spofless ((?:[a-z][\w-]*)(?: [^`#|]*)?)", line):
                yield f"{page.name}:{n}", m.group(1)


def test_every_documented_command_and_option_exists() -> None:
    seen = 0
    for where, words in _documented_invocations():
        try:
            tokens = shlex.split(words)  # a quoted command (`--run "python -m app"`) is one word
        except ValueError:
            tokens = words.split()
        if not tokens or tokens[0] not in main.commands:
            # Prose ("spofless makes", "spofless runs"), not a command line.
            continue
        seen += 1
        chain, rest = _command_at(tokens)
        assert isinstance(chain[-1], click.Command), where
        if isinstance(chain[-1], click.Group):
            continue  # a group named as such (`spofless lab fault FILE ...`)
        options = {
            opt for cmd in chain for p in cmd.params for opt in (*p.opts, *p.secondary_opts)
        } | {"--help", "-h"}
        for token in rest:
            opt = token.strip("[]()|,").split("=")[0]
            if opt.startswith("-") and opt not in ("-", "--") and not opt[1:2].isdigit():
                assert opt in options, f"{where}: `spofless {words.strip()}`: no option {opt}"
    assert seen > 50


def test_the_readme_command_table_is_every_command() -> None:
    table = [
        m.group(1).split()
        for m in re.finditer(r"^\| `spofless ([^`]+)`", README.read_text(), flags=re.M)
    ]
    listed: set[tuple[str, ...]] = set()
    for words in table:
        path = tuple(w for w in words if re.fullmatch(r"[a-z][a-z-]*", w))
        chain, _ = _command_at(list(path))
        assert len(chain) == len(path) + 1, f"README's command table: no command {words}"
        listed.add(path)
    leaves = set(_leaf_commands())
    # A group listed as one row (`lab fault`) stands for its subcommands.
    covered = {leaf for leaf in leaves if any(leaf[: len(p)] == p for p in listed)}
    assert covered == leaves, f"missing from README's command table: {sorted(leaves - covered)}"


# Capitalised words in help texts that are not arguments.
NOT_ARGUMENTS = {
    "AAAA", "AES", "ANY", "API", "ARP", "CA", "CIDR", "CPU", "DNS", "GCM", "GET", "HTTP",
    "IP", "ISO", "JSON", "LSN", "OS", "PROXY", "RFC", "RPO", "RTO", "SIGCONT", "SIGHUP",
    "SIGINT", "SIGKILL", "SIGSTOP", "SIGTERM", "SPOF", "SQL", "TCP", "TLS", "UDP", "UTC",
    "VIP", "WAL",
    "REGION", "ZONE",  # inside a format: zone:REGION/ZONE
}  # fmt: skip


def _walk(
    cmd: click.Command = main, path: tuple[str, ...] = ("spofless",)
) -> Iterator[tuple[tuple[str, ...], click.Command, list[click.Command]]]:
    yield path, cmd, []
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            for p, c, parents in _walk(sub, (*path, name)):
                yield p, c, [cmd, *parents]


def test_every_help_names_only_arguments_that_exist() -> None:
    # The words in capitals a help text names (FILE, INSTANCE, ...) are its arguments:
    # `pg failover --help` once named a CANDIDATE that did not exist.
    for path, cmd, parents in _walk():
        text = cmd.get_help(click.Context(cmd, info_name=" ".join(path)))
        # A group's list of commands quotes their help, checked with each command.
        text = text.split("\nCommands:\n")[0]
        metavars: set[str] = set()
        for c in [*parents, cmd]:
            for p in c.params:
                if isinstance(p, click.Argument):
                    metavars.add((p.name or "").upper())
        if isinstance(cmd, click.Group):
            # A group's help may show its subcommands' usage (`spofless backup FILE`).
            metavars |= {"COMMAND", "ARGS"}
            for _, sub, _ in _walk(cmd):
                metavars |= {
                    (p.name or "").upper() for p in sub.params if p.param_type_name == "argument"
                }
        # Environment variables (SPOFLESS_...) are no arguments either.
        words = {w for w in re.findall(r"\b[A-Z][A-Z_]{1,}\b", text) if "_" not in w}
        words -= {"OPTIONS"}
        unknown = {w for w in words if w not in metavars and w not in NOT_ARGUMENTS}
        # Option metavars (`--set NAME=VALUE`, `--port INTEGER RANGE`).
        unknown -= {
            "NAME",
            "VALUE",
            "TEXT",
            "INTEGER",
            "FLOAT",
            "RANGE",
            "DIRECTORY",
            "HOST",
            "OID",
            "DIR",
        }
        assert not unknown, f"{' '.join(path)} --help names {sorted(unknown)}"


def test_members_are_named_both_ways_in_help() -> None:
    for sub in ("switchover", "failover", "rejoin"):
        cmd = main.commands["pg"].commands[sub]  # type: ignore[attr-defined]
        text = cmd.get_help(click.Context(cmd, info_name=f"spofless pg {sub}"))
        assert "CANDIDATE" not in text
        assert re.search(r"db-\d or db/\d", text), sub


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_the_readme_tutorial_is_what_check_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    tutorial = README.read_text().split("## Five minutes, without root", 1)[1].split("\n## ")[0]
    before, after = _blocks(tutorial, "text")
    (fixed,) = _blocks(tutorial, "yaml")
    monkeypatch.chdir(ROOT)
    first = CliRunner().invoke(main, ["check", "examples/single-server.yaml"])
    assert first.exit_code == 1
    assert first.output.startswith(before)
    (tmp_path / "shop.yaml").write_text(fixed)
    monkeypatch.chdir(tmp_path)
    second = CliRunner().invoke(main, ["check", "shop.yaml"])
    assert second.exit_code == 0, second.output
    assert second.output.startswith(after)


def test_the_topology_reference_names_every_field() -> None:
    """docs/topology.md is every field in one place: each field of the schema is on it."""
    from pydantic import BaseModel

    from spofless.topology import _backup, _kinds, _schema

    page = (DOCS / "topology.md").read_text()
    models: list[type[BaseModel]] = [
        m
        for module in (_schema, _kinds, _backup)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__
    ]
    assert len(models) > 20
    missing = [
        f"{model.__name__}.{info.alias or name}"
        for model in models
        for name, info in model.model_fields.items()
        if not re.search(rf"\b{re.escape(info.alias or name)}\b", page)
    ]
    assert not missing, f"docs/topology.md does not name {missing}"
