"""Every class of invalid topology exits 2 with file:line:column and the field, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spofless.cli import main

VALID_HEAD = """\
name: shop
regions:
  eu: {zones: [a, b]}
hosts:
  n1: {zone: eu/a}
  n2: {zone: eu/b}
"""

CASES = {
    "unknown host": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: [n1, n9]}\nentry: [web]\n",
        ":8:",
        "components.web.instances[1]",
        "unknown host 'n9'",
    ),
    "unknown zone": (
        "name: shop\nregions:\n  eu: {zones: [a]}\nhosts:\n  n1: {zone: eu/q}\n"
        "components:\n  web: {kind: service, instances: [n1]}\nentry: [web]\n",
        ":5:",
        "hosts.n1.zone",
        "unknown zone 'eu/q'",
    ),
    "unknown component in needs": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: [n1], needs: [dbb]}\n"
        "  db: {kind: postgres, instances: [n2]}\nentry: [web]\n",
        ":8:",
        "components.web.needs[0]",
        "unknown component 'dbb' (did you mean 'db'?)",
    ),
    "unknown component in entry": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: [n1]}\nentry: [api]\n",
        ":9:",
        "entry[0]",
        "unknown component 'api'",
    ),
    "cycle in needs": (
        VALID_HEAD + "components:\n  a: {kind: service, instances: [n1], needs: [b]}\n"
        "  b: {kind: service, instances: [n2], needs: [a]}\nentry: [a]\n",
        ":",
        "needs[0]",
        "cycle in needs: a -> b -> a",
    ),
    "min_up larger than count": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: [n1, n2], min_up: 3}\n"
        "entry: [web]\n",
        ":8:",
        "components.web.min_up",
        "min_up is 3 but the component has only 2 instance(s)",
    ),
    "availability above 1": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: [n1], availability: 1.5}\n"
        "entry: [web]\n",
        ":8:",
        "components.web.availability",
        "between 0 and 1",
    ),
    "availability below 0": (
        "name: shop\ndefaults:\n  availability: {host: -0.1}\n"
        "components:\n  web: {kind: service, instances: 1}\nentry: [web]\n",
        ":3:",
        "defaults.availability.host",
        "between 0 and 1",
    ),
    "yaml syntax error": (
        "name: shop\ncomponents:\n  web: {kind: service, instances: [n1\nentry: [web]\n",
        ":4:",
        "",
        "YAML syntax error",
    ),
    "wrong type for instances": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: many}\nentry: [web]\n",
        ":8:",
        "components.web.instances",
        "expected a count (a whole number, at least 1) or a list of host names",
    ),
    "wrong type for min_up": (
        VALID_HEAD
        + "components:\n  web: {kind: service, instances: [n1], min_up: most}\nentry: [web]\n",
        ":8:",
        "components.web.min_up",
        "expected a whole number (at least 1) or 'majority'",
    ),
    "wrong type for needs": (
        VALID_HEAD
        + "components:\n  web: {kind: service, instances: [n1], needs: db}\nentry: [web]\n",
        ":8:",
        "components.web.needs",
        "expected a list of component names",
    ),
    "unknown field": (
        VALID_HEAD + "components:\n  web: {kind: service, instances: [n1], replicas: 2}\n"
        "entry: [web]\n",
        ":8:",
        "components.web.replicas",
        "unknown field 'replicas'",
    ),
    "missing field": (
        VALID_HEAD + "components:\n  web: {instances: [n1]}\nentry: [web]\n",
        ":8:",
        "components.web.kind",
        "missing required field 'kind'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_topology_exits_2_with_location(case: str, tmp_path: Path) -> None:
    text, line, field, message = CASES[case]
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}{line}" in result.output
    assert field in result.output
    assert message in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def _errors(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert all(line.startswith(f"error: {path}:") for line in lines), lines
    return [line.removeprefix(f"error: {path}:") for line in lines]


def test_schema_reference_and_cycle_errors_come_together(tmp_path: Path) -> None:
    # An unknown field no longer hides an unknown entry, nor an unknown host a cycle.
    text = VALID_HEAD + (
        "components:\n"
        "  a: {kind: service, instances: [n1, n9], needs: [b], replicas: 2}\n"
        "  b: {kind: service, instances: [n2], needs: [c]}\n"
        "  c: {kind: service, instances: [n9], needs: [b]}\n"
        "entry: [a, nope]\n"
    )
    errors = _errors(text, tmp_path)
    assert any("components.a.replicas: unknown field 'replicas'" in e for e in errors)
    assert any("components.c.instances[0]: unknown host 'n9'" in e for e in errors)
    assert any("cycle in needs: b -> c -> b" in e for e in errors)
    assert any("entry[1]: unknown component 'nope'" in e for e in errors)
    # Sorted by position in the file.
    lines = [int(e.split(":")[0]) for e in errors]
    assert lines == sorted(lines)


def test_a_broken_host_is_no_unknown_host(tmp_path: Path) -> None:
    text = (
        "name: shop\nhosts:\n  n1: {zone: eu/a, availability: 2}\n"
        "components:\n  web: {kind: service, instances: [n1]}\nentry: [web]\n"
    )
    errors = _errors(text, tmp_path)
    assert any("hosts.n1.availability" in e for e in errors)
    assert not any("unknown host" in e for e in errors)


@pytest.mark.parametrize(
    ("component", "field", "message"),
    [
        ("{kind: service, instances: [n1], mindup: 1}", "mindup", "(did you mean 'min_up'?)"),
        ("{kind: service, instances: [n1], prot: 80}", "prot", "(did you mean 'port'?)"),
        (
            "{kind: load_balancer, instances: [n1], routes: [{to: web, rol: primary}]}",
            "routes[0].rol",
            "(did you mean 'role'?)",
        ),
        ("{kind: service, instances: []}", "instances", "no instances: list at least one host"),
        ("{kind: service, instances: [n1], port: 99999}", "port", "must be at most 65535"),
        ("{kind: service, instances: [n1], port: http}", "port", "expected a whole number"),
        (
            "{kind: service, instances: [n1], run: 'app {prot}'}",
            "run",
            "unknown placeholder {prot}",
        ),
        (
            "{kind: load_balancer, instances: [n1], mode: udp}",
            "mode",
            "expected 'http', 'tcp' or 'redis'",
        ),
    ],
)
def test_messages_are_in_the_tools_own_words(
    component: str, field: str, message: str, tmp_path: Path
) -> None:
    errors = _errors(VALID_HEAD + f"components:\n  web: {component}\nentry: [web]\n", tmp_path)
    assert any(f"components.web.{field}: " in e and message in e for e in errors), errors
    for jargon in ("Value error", "Extra inputs", "Input should", "{'", "min_up is"):
        assert not any(jargon in e for e in errors), errors


def test_a_duplicate_key_is_named_without_python_reprs(tmp_path: Path) -> None:
    text = (
        "name: shop\ncomponents:\n  web: {kind: service, instances: 1}\n"
        "  web: {kind: service, instances: 2}\nentry: [web]\n"
    )
    (error,) = _errors(text, tmp_path)
    assert error.startswith("4:3: duplicate key 'web'")
    assert "{" not in error


def test_the_documented_sample_is_the_real_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text()
    section = page.split("Every mistake is reported", 1)[1]
    yaml_text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = section.split("```text\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shop.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "shop.yaml"])
    assert result.exit_code == 2
    assert result.output == shown


def test_pattern_errors_say_what_fits(tmp_path: Path) -> None:
    text = VALID_HEAD + (
        "components:\n"
        "  lb: {kind: load_balancer, instances: [n1], lb: {hash_key: body}}\n"
        "entry: [lb]\n"
    )
    (error,) = _errors(text, tmp_path)
    assert error.endswith(
        "components.lb.lb.hash_key: expected source, path, header:<name> or cookie:<name>"
    )


def test_up_prints_the_warnings_first(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(
        "name: shop\nhosts:\n  a: {address: 127.0.0.1}\n  b: {address: 127.0.0.1}\n"
        "components:\n  web: {kind: service, instances: [a]}\n"
        "  db: {kind: postgres, instances: [b]}\nentry: [web]\n"
    )
    # web's one instance is a single point of failure: `up` refuses before starting
    # anything, after the warnings.
    result = CliRunner().invoke(main, ["up", str(path), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"warning: {path}:3:7: hosts.a.address: hosts a, b share address")
    assert "a single point of failure of web" in lines[0]
    assert lines[1].startswith(f"warning: {path}:7:3: components.db: no entry component")
    assert not (tmp_path / "s").exists()


def test_a_broken_region_hides_no_badly_written_zone(tmp_path: Path) -> None:
    text = (
        "name: x\nhosts: {a: {zone: eu}}\nregions: {eu: {zones: [a], availabilty: 1}}\n"
        "components:\n  web: {kind: service, instances: [a]}\nentry: [web]\n"
    )
    errors = _errors(text, tmp_path)
    assert any("hosts.a.zone: zone 'eu' must be written '<region>/<zone>'" in e for e in errors)
    assert any("(did you mean 'availability'?)" in e for e in errors)


def test_a_component_with_a_bad_field_is_still_checked_whole(tmp_path: Path) -> None:
    text = (
        "name: x\nhosts: {a: {}}\ncomponents:\n"
        "  web: {kind: load_balancer, instances: [a, b], needs: [dbb], mode: tcp,"
        " routes: [{to: db}, {to: db}], prot: 1}\n"
        "  db: {kind: service, instances: [a]}\nentry: [web]\n"
    )
    errors = _errors(text, tmp_path)
    assert [e.split(": ", 1)[1] for e in errors] == [
        "components.web: a load balancer in tcp mode takes exactly one route",
        "components.web.instances[1]: unknown host 'b'",
        "components.web.needs[0]: unknown component 'dbb' (did you mean 'db'?)",
        "components.web.prot: unknown field 'prot' (did you mean 'port'?)",
    ]
