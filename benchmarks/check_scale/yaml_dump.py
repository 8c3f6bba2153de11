"""Write plain data as YAML with ruamel.yaml (flow style for leaf mappings, like a person would)."""

from __future__ import annotations

from typing import IO, Any

from ruamel.yaml import YAML


def dump(data: dict[str, Any], out: IO[str]) -> None:
    yaml = YAML()
    yaml.default_flow_style = None  # block style for nesting, flow style for leaves
    yaml.width = 4096
    yaml.dump(data, out)
