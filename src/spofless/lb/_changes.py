"""Backends added and removed at runtime, over the settings read from the file.

The admin API adds a backend to a route (a rollout's temporary instance) and removes
one (drained first). The controller keeps those changes apart from the settings the
file gave (`base`) and applies them again over every reload, as it keeps the admin
states of the backends: a reload changes what the file changed, not what an operator
did. A restart of the load balancer starts from the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from pydantic import ValidationError

from spofless.lb._handover import route_keys
from spofless.lb._settings import BackendSpec, LbSettings

__all__ = ["Refused", "overlay"]


class Refused(Exception):
    """A runtime change the controller does not make: `status` is the admin API's answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def overlay(
    base: LbSettings, added: Mapping[str, tuple[str, BackendSpec]], removed: Set[str]
) -> LbSettings:
    """`base` with the backends `added` (name -> (route key, spec)) and without those
    `removed`; a backend `base` names already stays as `base` has it. ValueError (why)
    when a route would not stand (left without a primary)."""
    keys = route_keys(base.routes)
    routes = []
    for key, route in zip(keys, base.routes, strict=True):
        backends = [b.model_dump() for b in route.backends if b.name not in removed]
        names = {b.name for b in route.backends}
        backends += [
            spec.model_dump() for k, spec in added.values() if k == key and spec.name not in names
        ]
        routes.append({**route.model_dump(), "backends": backends})
    try:
        return LbSettings.model_validate({**base.model_dump(), "routes": routes})
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None
