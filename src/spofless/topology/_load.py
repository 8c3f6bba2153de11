"""Loading a topology file: YAML with positions, schema, cross-references.

Every problem is reported with the file, line and column of the value at fault
and its field path (`components.web.instances[2]`), all problems at once, as
a `TopologyError`. Nothing here raises anything else for bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from spofless.topology._errors import Problem, TopologyError
from spofless.topology._kinds import component_model
from spofless.topology._model import Host, Instance, Loc, Location, Topology
from spofless.topology._schema import Component, TopologyFile


def load_topology(path: str | Path) -> Topology:
    """Read, validate and resolve the topology file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError([Problem(str(path), 0, 0, "", "no such file")]) from None
    except IsADirectoryError:
        raise TopologyError([Problem(str(path), 0, 0, "", "is a directory, not a file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError([Problem(str(path), 0, 0, "", f"cannot read: {exc}")]) from None
    return load_topology_text(text, source=str(path))


def load_topology_text(text: str, source: str = "<memory>") -> Topology:
    """Validate and resolve a topology given as YAML text."""
    yaml = YAML(typ="rt")
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        raise TopologyError([Problem(source, line, col, "", msg)]) from None
    except YAMLError as exc:
        raise TopologyError([Problem(source, 0, 0, "", f"YAML error: {exc}")]) from None
    locations: dict[Loc, Location] = {(): Location(source, 1, 1)}
    data = _plain(raw, (), source, locations)
    return topology_from_data(data, source=source, locations=locations)


def topology_from_data(
    data: Any,
    source: str = "<memory>",
    locations: Mapping[Loc, Location] | None = None,
) -> Topology:
    """Validate and resolve a topology given as plain data (dicts and lists)."""
    return _Resolver(source, locations or {(): Location(source, 1, 1)}).resolve(data)


def _plain(node: Any, path: Loc, source: str, out: dict[Loc, Location]) -> Any:
    """Turn ruamel's round-trip nodes into plain data, recording each value's position."""
    if isinstance(node, CommentedMap):
        result: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*path, key)
            line, col = node.lc.key(key)
            out[child] = Location(source, line + 1, col + 1)
            result[key] = _plain(value, child, source, out)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            child = (*path, i)
            line, col = node.lc.item(i)
            out[child] = Location(source, line + 1, col + 1)
            items.append(_plain(value, child, source, out))
        return items
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def field_path(loc: Loc) -> str:
    """`("components", "web", "instances", 2)` -> `components.web.instances[2]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Resolver:
    def __init__(self, source: str, locations: Mapping[Loc, Location]) -> None:
        self.source = source
        self.locations = locations
        self.problems: list[Problem] = []

    def problem(self, loc: Loc, message: str) -> None:
        where = self._locate(loc)
        self.problems.append(
            Problem(self.source, where.line, where.column, field_path(loc), message)
        )

    def _locate(self, loc: Loc) -> Location:
        while loc and loc not in self.locations:
            loc = loc[:-1]
        return self.locations.get(loc) or Location(self.source, 0, 0)

    def fail_if_problems(self) -> None:
        if self.problems:
            raise TopologyError(sorted(self.problems, key=lambda p: (p.line, p.column)))

    def add_validation_error(self, exc: ValidationError, prefix: Loc, data: Any) -> None:
        # Unions report one error per branch; keep one line per field path.
        by_path: dict[Loc, list[str]] = {}
        for err in exc.errors(include_url=False):
            loc = _data_path(data, tuple(err["loc"]))
            if err["type"] == "missing":
                msg = f"missing required field '{err['loc'][-1]}'"
                loc = loc[:-1] if loc and loc[-1] == err["loc"][-1] else loc
                loc = (*loc, err["loc"][-1])
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field '{err['loc'][-1]}'"
            else:
                msg = err["msg"]
            msgs = by_path.setdefault((*prefix, *loc), [])
            if msg not in msgs:
                msgs.append(msg)
        for loc, msgs in by_path.items():
            self.problem(loc, _friendly(loc, msgs))

    # -- resolution -------------------------------------------------------------

    def resolve(self, data: Any) -> Topology:
        if not isinstance(data, dict):
            self.problem((), "a topology file must be a mapping with name, components and entry")
            self.fail_if_problems()
        top: TopologyFile | None = None
        try:
            top = TopologyFile.model_validate(data)
        except ValidationError as exc:
            self.add_validation_error(exc, (), data)

        # Components are checked even when the rest failed, to report everything at once.
        raw_components = data.get("components")
        components: dict[str, Component] = {}
        for name, raw in (raw_components if isinstance(raw_components, dict) else {}).items():
            if not isinstance(raw, dict):
                self.problem(("components", name), "a component must be a mapping")
                continue
            try:
                components[name] = component_model(raw.get("kind")).model_validate(raw)
            except ValidationError as exc:
                self.add_validation_error(exc, ("components", name), raw)
        self.fail_if_problems()
        assert top is not None

        avail = top.defaults.availability
        regions: dict[str, float] = {}
        zones: dict[str, float] = {}
        for rname, region in top.regions.items():
            regions[rname] = avail.region if region.availability is None else region.availability
            for zname, zone in region.zone_specs().items():
                zones[f"{rname}/{zname}"] = (
                    avail.zone if zone.availability is None else zone.availability
                )

        hosts: dict[str, Host] = {}
        for hname, hspec in top.hosts.items():
            host_zone: str | None = None
            region_name: str | None = None
            host_avail = avail.host
            address = "127.0.0.1"
            if hspec is not None:
                host_avail = avail.host if hspec.availability is None else hspec.availability
                address = hspec.address
                if hspec.zone is not None:
                    if hspec.zone in zones:
                        host_zone, region_name = hspec.zone, hspec.zone.split("/", 1)[0]
                    else:
                        self.problem(("hosts", hname, "zone"), self._unknown_zone(hspec.zone, top))
            hosts[hname] = Host(hname, host_avail, address, host_zone, region_name)

        instances: dict[str, tuple[Instance, ...]] = {}
        for cname, comp in components.items():
            inst_avail = avail.instance if comp.availability is None else comp.availability
            if isinstance(comp.instances, int):
                instances[cname] = tuple(
                    Instance(cname, i, None, inst_avail) for i in range(comp.instances)
                )
            else:
                for i, hname in enumerate(comp.instances):
                    if hname not in hosts:
                        self.problem(
                            ("components", cname, "instances", i),
                            f"unknown host '{hname}'{_suggest(hname, hosts)}",
                        )
                instances[cname] = tuple(
                    Instance(cname, i, h, inst_avail) for i, h in enumerate(comp.instances)
                )
            for j, dep in enumerate(comp.needs):
                if dep not in top.components:
                    self.problem(
                        ("components", cname, "needs", j),
                        f"unknown component '{dep}'{_suggest(dep, top.components)}",
                    )
            if comp.required_up > comp.instance_count:
                self.problem(
                    ("components", cname, "min_up"),
                    f"min_up is {comp.required_up} but the component has only "
                    f"{comp.instance_count} instance(s)",
                )
        for j, name in enumerate(top.entry):
            if name not in top.components:
                self.problem(
                    ("entry", j), f"unknown component '{name}'{_suggest(name, top.components)}"
                )
        self.fail_if_problems()
        self._check_cycles(components)
        self.fail_if_problems()

        return Topology(
            name=top.name,
            defaults=top.defaults,
            regions=regions,
            zones=zones,
            hosts=hosts,
            components=components,
            instances=instances,
            entry=tuple(top.entry),
            data=data,
            source=self.source,
            locations=self.locations,
        )

    def _unknown_zone(self, zone: str, top: TopologyFile) -> str:
        if "/" not in zone:
            return f"zone '{zone}' must be written '<region>/<zone>'"
        region, _ = zone.split("/", 1)
        if region not in top.regions:
            return f"unknown region '{region}'{_suggest(region, top.regions)}"
        known = [f"{region}/{z}" for z in top.regions[region].zone_specs()]
        return f"unknown zone '{zone}'{_suggest(zone, known)}"

    def _check_cycles(self, components: Mapping[str, Component]) -> None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        stack: list[str] = []

        def visit(name: str) -> None:
            state[name] = 1
            stack.append(name)
            for j, dep in enumerate(components[name].needs):
                if state.get(dep) == 1:
                    cycle = [*stack[stack.index(dep) :], dep]
                    self.problem(
                        ("components", name, "needs", j),
                        "cycle in needs: " + " -> ".join(cycle),
                    )
                elif dep not in state:
                    visit(dep)
            stack.pop()
            state[name] = 2

        for name in components:
            if name not in state:
                visit(name)


# Fields whose pydantic message (one per union branch) reads badly: say what is expected.
_EXPECTED = {
    "instances": "expected a count (a whole number, at least 1) or a list of host names",
    "min_up": "expected a whole number (at least 1) or 'majority'",
    "zones": "expected a list of zone names or a mapping of zone name to settings",
    "needs": "expected a list of component names",
    "entry": "expected a non-empty list of component names",
}


def _friendly(loc: Loc, msgs: list[str]) -> str:
    """One readable message for the problems pydantic found at `loc`."""
    name = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if any(m.startswith(("missing required", "unknown field")) for m in msgs):
        return " or ".join(msgs)
    if name in _EXPECTED and (len(msgs) > 1 or "valid" in msgs[0]):
        return _EXPECTED[name]
    if name == "availability" or (len(loc) >= 2 and loc[-2] == "availability"):
        return "an availability must be a number between 0 and 1"
    return " or ".join(msgs)


def _data_path(data: Any, loc: Loc) -> Loc:
    """Drop the union-branch tags pydantic puts in error locations (e.g. 'list[...]')."""
    out: list[str | int] = []
    node: Any = data
    for part in loc:
        if isinstance(node, list):
            if isinstance(part, int) and 0 <= part < len(node):
                out.append(part)
                node = node[part]
        elif isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
            elif isinstance(part, str) and "[" not in part:
                # A missing or unknown field: name it, there is no value to descend into.
                out.append(part)
                node = None
    return tuple(out)


def _suggest(name: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
