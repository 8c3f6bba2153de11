"""Loading a topology file: YAML with positions, schema, cross-references.

Every problem is reported with the file, line and column of the value at fault
and its field path (`components.web.instances[2]`), all problems at once, as
a `TopologyError`. Nothing here raises anything else for bad input.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from spofless.topology._checks import (
    check_auto_promote,
    check_cycles,
    check_lb_routes,
    check_ports,
    check_references,
    check_standby_clusters,
    check_vip_regions,
    lone_region_vip_warnings,
    shared_address_warnings,
    unreached_warnings,
)
from spofless.topology._errors import Problem, TopologyError
from spofless.topology._kinds import component_model
from spofless.topology._messages import combine, message, suggest
from spofless.topology._model import Host, Instance, Loc, Location, Topology
from spofless.topology._schema import Component, HostSpec, RegionSpec, TopologyFile


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
        if isinstance(exc, DuplicateKeyError):
            key = (exc.problem or "").partition('"')[2].partition('"')[0]
            msg = f"duplicate key '{key}': a name may appear only once in a mapping"
        else:
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
        self.entry_valid = True
        self.broken_regions: set[str] = set()

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
            unique = {(p.line, p.column, p.field, p.message): p for p in self.problems}
            raise TopologyError(sorted(unique.values(), key=lambda p: (p.line, p.column)))

    def add_validation_error(
        self, exc: ValidationError, prefix: Loc, data: Any, model: type[BaseModel]
    ) -> None:
        # Unions report one error per branch; keep one line per field path.
        by_path: dict[Loc, list[str]] = {}
        for err in exc.errors(include_url=False):
            loc = _data_path(data, tuple(err["loc"]))
            if err["type"] == "missing":
                loc = loc[:-1] if loc and loc[-1] == err["loc"][-1] else loc
                loc = (*loc, err["loc"][-1])
            msg = message(err, model, loc)
            msgs = by_path.setdefault(loc, [])
            if msg not in msgs:
                msgs.append(msg)
        for loc, msgs in by_path.items():
            self.problem((*prefix, *loc), combine(loc, msgs))

    # -- resolution -------------------------------------------------------------

    def resolve(self, data: Any) -> Topology:
        """Every check runs, whatever an earlier one found: all problems come at once."""
        if not isinstance(data, dict):
            self.problem((), "a topology file must be a mapping with name, components and entry")
            self.fail_if_problems()
        top = self._validate_file(data)
        raw_components = data.get("components")
        raw_components = raw_components if isinstance(raw_components, dict) else {}
        components: dict[str, Component] = {}
        for name, raw in raw_components.items():
            if not isinstance(raw, dict):
                self.problem(("components", name), "a component must be a mapping")
                continue
            model = component_model(raw.get("kind"))
            try:
                components[name] = model.model_validate(raw)
            except ValidationError as exc:
                self.add_validation_error(exc, ("components", name), raw, model)
                # Without its faulty fields it may still be whole enough for the checks
                # of references and cycles to see it (the faults are reported already).
                faulty = {e["loc"][0] for e in exc.errors() if e["loc"]}
                if not faulty & {"kind", "instances"}:
                    kept = {k: v for k, v in raw.items() if k not in faulty}
                    common = {k: v for k, v in kept.items() if k in Component.model_fields}
                    try:
                        components[name] = model.model_validate(kept)
                    except ValidationError as again:
                        # Checks of the whole component run only once its fields pass.
                        self.add_validation_error(again, ("components", name), kept, model)
                        with contextlib.suppress(ValidationError):
                            components[name] = Component.model_validate(common)

        regions, zones = self._regions(top)
        hosts = self._hosts(top, zones)
        instances = self._instances(components, hosts, top.defaults.availability.instance)
        if self.entry_valid:
            for j, name in enumerate(top.entry):
                if name not in raw_components:
                    self.problem(
                        ("entry", j), f"unknown component '{name}'{suggest(name, raw_components)}"
                    )
        if top.objectives is not None and self.entry_valid:
            for name in top.objectives.entry:
                if name not in top.entry:
                    self.problem(
                        ("objectives", "entry", name),
                        f"'{name}' is not an entry component (entry: {', '.join(top.entry)})",
                    )
        check_references(components, raw_components, top.regions, self.problem)
        check_standby_clusters(components, raw_components, self.problem)
        check_cycles(components, self.problem)
        check_lb_routes(components, self.problem)
        check_ports(hosts, components, instances, self.problem)
        check_vip_regions(hosts, components, instances, top.regions, self.problem)
        check_auto_promote(hosts, components, instances, self.problem)
        self.fail_if_problems()

        topology = Topology(
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
        # The names a drill uses (components, instances, hosts, roles) need the topology
        # built: checked last, with file:line, like every other mistake.
        from spofless.topology._drills import drill_problems

        self.problems.extend(drill_problems(topology))
        self.fail_if_problems()
        required = topology.required_components()
        standbys = [s for r in required for s in topology.cluster_group(r)[1:]]
        found = [
            *unreached_warnings(
                components, required, top.entry, topology.dependency_order(standbys)
            ),
            *shared_address_warnings(data, hosts, components, instances, required),
            *lone_region_vip_warnings(hosts, components, instances),
        ]
        warnings = []
        for loc, text in found:
            where = self._locate(loc)
            warnings.append(Problem(self.source, where.line, where.column, field_path(loc), text))
        warnings.sort(key=lambda w: (w.line, w.column))
        return dataclasses.replace(topology, warnings=tuple(warnings))

    def _validate_file(self, data: dict[Any, Any]) -> TopologyFile:
        """The file's top level; when invalid, its problems are recorded and what is valid
        is kept (each region and host on its own), so that later checks still run."""
        try:
            return TopologyFile.model_validate(data)
        except ValidationError as exc:
            self.add_validation_error(exc, (), data, TopologyFile)
        base: dict[str, Any] = {"name": "x", "components": {}, "entry": ["x"]}

        def valid(key: str, value: Any) -> bool:
            try:
                TopologyFile.model_validate({**base, key: value})
            except ValidationError:
                return False
            return True

        kept = dict(base)
        self.entry_valid = False
        for key, value in data.items():
            if key not in TopologyFile.model_fields or key == "components":
                continue
            if key in ("regions", "hosts") and isinstance(value, dict):
                # A broken entry keeps its name (with default settings): no "unknown" follows.
                value = {
                    k: v if valid(key, {k: v}) else ({} if key == "regions" else None)
                    for k, v in value.items()
                }
                if key == "regions":
                    self.broken_regions = {k for k, v in value.items() if v == {}}
            if valid(key, value):
                kept[key] = value
                self.entry_valid = self.entry_valid or key == "entry"
        return TopologyFile.model_validate(kept)

    def _regions(self, top: TopologyFile) -> tuple[dict[str, float], dict[str, float]]:
        avail = top.defaults.availability
        regions: dict[str, float] = {}
        zones: dict[str, float] = {}
        for rname, region in top.regions.items():
            regions[rname] = avail.region if region.availability is None else region.availability
            for zname, zone in region.zone_specs().items():
                zones[f"{rname}/{zname}"] = (
                    avail.zone if zone.availability is None else zone.availability
                )
        return regions, zones

    def _hosts(self, top: TopologyFile, zones: Mapping[str, float]) -> dict[str, Host]:
        avail = top.defaults.availability
        hosts: dict[str, Host] = {}
        for hname, given in top.hosts.items():
            spec = given or HostSpec()
            host_zone: str | None = None
            region_name: str | None = None
            if spec.zone is not None:
                if spec.zone in zones:
                    host_zone, region_name = spec.zone, spec.zone.split("/", 1)[0]
                elif "/" not in spec.zone or _region_of(spec.zone) not in self.broken_regions:
                    self.problem(("hosts", hname, "zone"), _unknown_zone(spec.zone, top.regions))
            host_avail = avail.host if spec.availability is None else spec.availability
            hosts[hname] = Host(hname, host_avail, spec.address, host_zone, region_name)
        return hosts

    def _instances(
        self, components: Mapping[str, Component], hosts: Mapping[str, Host], avail: float
    ) -> dict[str, tuple[Instance, ...]]:
        instances: dict[str, tuple[Instance, ...]] = {}
        for cname, comp in components.items():
            inst_avail = avail if comp.availability is None else comp.availability
            if isinstance(comp.instances, int):
                instances[cname] = tuple(
                    Instance(cname, i, None, inst_avail) for i in range(comp.instances)
                )
            else:
                for i, hname in enumerate(comp.instances):
                    if hname not in hosts:
                        self.problem(
                            ("components", cname, "instances", i),
                            f"unknown host '{hname}'{suggest(hname, hosts)}",
                        )
                instances[cname] = tuple(
                    Instance(cname, i, h, inst_avail) for i, h in enumerate(comp.instances)
                )
            if comp.instance_count == 0:
                self.problem(
                    ("components", cname, "instances"),
                    "no instances: list at least one host name, or give a count",
                )
            elif comp.required_up > comp.instance_count:
                self.problem(
                    ("components", cname, "min_up"),
                    f"min_up is {comp.required_up} but the component has only "
                    f"{comp.instance_count} instance(s)",
                )
        return instances


def _region_of(zone: str) -> str:
    return zone.split("/", 1)[0]


def _unknown_zone(zone: str, regions: Mapping[str, RegionSpec]) -> str:
    if "/" not in zone:
        return f"zone '{zone}' must be written '<region>/<zone>'"
    region, _ = zone.split("/", 1)
    if region not in regions:
        return f"unknown region '{region}'{suggest(region, regions)}"
    known = [f"{region}/{z}" for z in regions[region].zone_specs()]
    return f"unknown zone '{zone}'{suggest(zone, known)}"


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
