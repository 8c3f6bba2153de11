"""The monitor's live web page: the topology as a graph, coloured by what the monitor sees.

    graph_elements(topology) -> [element]   Cytoscape.js elements: regions, zones and hosts
                                            as boxes, instances inside their host
    page() -> bytes                         the page (no build step: plain HTML and JS)
    static_file(name) -> bytes | None       the vendored libraries (Cytoscape.js 3.34.4,
                                            uPlot 1.6.32 for the charts)

The page loads `/graph` once, then follows `/stream` (server-sent events: the
monitor's /status JSON each time something changed), with no reload: each
instance is coloured by its state (up, down, catching up, not streaming), the
PostgreSQL primary and the VIP holder are marked, live single points of failure
are outlined, and the live availability, margins, alerts and the latest events
are listed. Below the graph, one chart per component and recorded gauge (CPU,
memory, requests, latency, replication lag), one line per instance: the last
hour from `/gauges`, then each new sample from the stream. Everything is
vendored in the package: it works offline.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from spofless.topology import Topology

_STATIC = (
    "cytoscape.min.js",
    "cytoscape.LICENSE",
    "uplot.iife.min.js",
    "uplot.min.css",
    "uplot.LICENSE",
)


def graph_elements(topology: Topology) -> list[dict[str, Any]]:
    """Cytoscape.js elements of `topology`'s places and instances (ids are element names)."""
    out: list[dict[str, Any]] = []
    for region in topology.regions:
        out.append({"data": {"id": f"region:{region}", "label": region, "kind": "region"}})
    for zone in topology.zones:
        region = zone.split("/", 1)[0]
        out.append(
            {
                "data": {
                    "id": f"zone:{zone}",
                    "label": zone,
                    "kind": "zone",
                    "parent": f"region:{region}",
                }
            }
        )
    for host in topology.hosts.values():
        data: dict[str, Any] = {"id": host.element, "label": host.name, "kind": "host"}
        if host.zone is not None:
            data["parent"] = f"zone:{host.zone}"
        out.append({"data": data})
    for inst in topology.all_instances():
        data = {
            "id": inst.element,
            "label": inst.name,
            "kind": "instance",
            "component": inst.component,
        }
        if inst.host is not None:
            data["parent"] = f"host:{inst.host}"
        out.append({"data": data})
    return out


def page() -> bytes:
    return resources.files(__package__).joinpath("static", "index.html").read_bytes()


def static_file(name: str) -> bytes | None:
    """A vendored file by name; None for anything else (no path is ever joined blindly)."""
    if name not in _STATIC:
        return None
    return resources.files(__package__).joinpath("static", name).read_bytes()
