"""The SARIF 2.1.0 report, for code-scanning tools: each finding on its YAML line.

Rule SPOF001 (error): a single point of failure, at the component it takes
down. Rule SPOF002 (warning): a minimal cut set of two or more elements, at
the first component they take down together. Rule SPOF003 (warning): what the
topology says that is valid but probably not meant, at its line. Rule SPOF004
(error): a declared recovery objective (`objectives:`) the design cannot meet,
at the line that declares it.
"""

from __future__ import annotations

import json
from typing import Any

from spofless import __version__
from spofless.analysis._report import Report
from spofless.topology import Location

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES = [
    {
        "id": "SPOF001",
        "name": "SinglePointOfFailure",
        "shortDescription": {"text": "Single point of failure"},
        "fullDescription": {
            "text": "The failure of this one element alone takes the whole system down."
        },
        "help": {"text": "Apply the recommended change: add or spread instances."},
        "defaultConfiguration": {"level": "error"},
    },
    {
        "id": "SPOF002",
        "name": "MinimalCutSet",
        "shortDescription": {"text": "Small minimal cut set"},
        "fullDescription": {
            "text": "These elements failing together take the system down, and no fewer of them do."
        },
        "help": {"text": "Spread the instances involved over more hosts, zones or regions."},
        "defaultConfiguration": {"level": "warning"},
    },
    {
        "id": "SPOF003",
        "name": "TopologyWarning",
        "shortDescription": {"text": "Valid but probably not meant"},
        "fullDescription": {
            "text": "A component no entry depends on, or hosts that share one machine: "
            "the analysis cannot see what the file does not say."
        },
        "help": {"text": "Add the dependency, or give each host its own address."},
        "defaultConfiguration": {"level": "warning"},
    },
    {
        "id": "SPOF004",
        "name": "RecoveryObjectiveNotMet",
        "shortDescription": {"text": "Recovery objective the design cannot meet"},
        "fullDescription": {
            "text": "The declared RTO or RPO is shorter than what the design can guarantee."
        },
        "help": {"text": "Apply the fix: replication mode, replicas, or a shorter ttl."},
        "defaultConfiguration": {"level": "error"},
    },
]


def _locations(loc: Location | None, element: str) -> list[dict[str, Any]]:
    out: dict[str, Any] = {"logicalLocations": [{"name": element, "kind": "element"}]}
    if loc is not None and not loc.file.startswith("<"):
        out["physicalLocation"] = {
            "artifactLocation": {"uri": loc.file},
            "region": {"startLine": max(loc.line, 1), "startColumn": max(loc.column, 1)},
        }
    return [out]


def render_sarif(report: Report) -> str:
    results: list[dict[str, Any]] = []
    for s in report.spofs:
        results.append(
            {
                "ruleId": "SPOF001",
                "ruleIndex": 0,
                "level": "error",
                "message": {
                    "text": f"{s.element} is a single point of failure: {s.reason}. "
                    f"Fix: {s.recommendation} (availability would be "
                    f"{s.availability_if_fixed:.6%})."
                },
                "locations": _locations(s.location, s.element),
                "partialFingerprints": {"spofElement/v1": s.element},
                "properties": {
                    "components": list(s.components),
                    "availability_if_fixed": s.availability_if_fixed,
                },
            }
        )
    for cut, comps in zip(report.cut_sets, report.cut_set_components, strict=True):
        if len(cut) < 2:
            continue
        results.append(
            {
                "ruleId": "SPOF002",
                "ruleIndex": 1,
                "level": "warning",
                "message": {
                    "text": f"{' + '.join(cut)} failing together take down {', '.join(comps)}"
                },
                "locations": _locations(report.component(comps[0]).location, " + ".join(cut)),
                "partialFingerprints": {"cutSet/v1": "+".join(cut)},
            }
        )
    for w in report.warnings:
        results.append(
            {
                "ruleId": "SPOF003",
                "ruleIndex": 2,
                "level": "warning",
                "message": {"text": f"{w.field}: {w.message}" if w.field else w.message},
                "locations": _locations(Location(w.file, w.line, w.column), w.field),
                "partialFingerprints": {"topologyWarning/v1": f"{w.field}:{w.message}"},
            }
        )
    for r in report.recovery:
        for u in r.unmet:
            results.append(
                {
                    "ruleId": "SPOF004",
                    "ruleIndex": 3,
                    "level": "error",
                    "message": {
                        "text": f"{r.component} ({r.data}): {u.objective.upper()} "
                        f"{u.declared:g} s cannot be met: {u.why}. Fix: {u.fix}"
                    },
                    "locations": _locations(u.location, r.component),
                    "partialFingerprints": {"recoveryObjective/v1": f"{r.component}:{u.objective}"},
                }
            )
    sarif = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "spofless",
                        "version": __version__,
                        "rules": RULES,
                    }
                },
                "results": results,
                "properties": {
                    "availability": report.availability,
                    "exact": report.exact,
                    "availability_error": report.availability_error,
                    "downtime_minutes_per_year": report.downtime_minutes_per_year,
                },
            }
        ],
    }
    return json.dumps(sarif, indent=2) + "\n"
