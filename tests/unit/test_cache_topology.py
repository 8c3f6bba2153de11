"""Bad cache settings: a clear error naming file and line, before anything runs."""

from __future__ import annotations

import pytest

from spofless.lb import lb_settings
from spofless.topology import CannotRunError, TopologyError, load_topology_text


def test_bad_cache_settings_are_named_with_their_line() -> None:
    head = "name: t\nhosts: {h1: {}, h2: {}}\ncomponents:\n"
    with pytest.raises(TopologyError, match=r"f.yaml:4:.*min_replicas_to_write \(2\)"):
        load_topology_text(
            head + "  c: {kind: cache, instances: [h1, h2], min_replicas_to_write: 2}\n"
            "entry: [c]\n",
            source="f.yaml",
        )
    t = load_topology_text(
        head + "  lb: {kind: load_balancer, instances: [h1, h2], mode: redis, port: 7000,\n"
        "       routes: [{to: web}]}\n"
        "  web: {kind: service, instances: [h1, h2], port: 8000}\nentry: [lb]\n",
        source="f.yaml",
    )
    with pytest.raises(CannotRunError, match=r"f.yaml:5:.*mode redis routes to cache components"):
        lb_settings(t, "lb", 0)
