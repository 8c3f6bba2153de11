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
