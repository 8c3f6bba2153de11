"""What every runtime part asks of a topology before it can run, answered once.

    CannotRunError                        this part cannot run from this topology
    where(topology, *path)                "file:line:col" of components.<path>, for messages
    component_of(topology, name, kind)    the component, of that kind, or CannotRunError
    instance_at(topology, name, index)    its instance `index`, bounds checked
    etcd_component(topology, name, ...)   the etcd component named, or the only one
    etcd_client_urls(topology, etcd)      `https://ip:port` of each member (http without TLS)
    tls_on(topology)                      whether `security: {tls: ...}` is on (the default)
    vip_claim_key(topology, lb, region)   the etcd key of a load balancer's VIP claim

The load balancer, DNS server, VIP agent, PostgreSQL agent and the stack use
these, so a message about the same mistake reads the same whichever part finds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from spofless.errors import SpoflessError
from spofless.topology._errors import Problem, TopologyError
from spofless.topology._kinds import EtcdComponent
from spofless.topology._model import Instance, Topology
from spofless.topology._schema import Component, SecuritySpec

C = TypeVar("C", bound=Component)


class CannotRunError(TopologyError):
    """This part cannot run from this topology (or from the flags standing in for one).

    A component or instance that is not there, a field the part needs that is
    missing, or settings that contradict each other. Built from `problems` (each
    with its file:line) or from one message that already says where.
    """

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems = []
            SpoflessError.__init__(self, problems)
        else:
            super().__init__(problems)


def where(topology: Topology, *path: str | int) -> str:
    """Where `components.<path>` is written ("file:line:col"), or the file when unknown."""
    loc = topology.location_of("components", *path)
    return str(loc) if loc else topology.source


def component_of(topology: Topology, name: str, kind: type[C]) -> C:
    """Component `name`, which must be of `kind`; CannotRunError listing those that are."""
    comp = topology.components.get(name)
    if isinstance(comp, kind):
        return comp
    label = _kind_name(kind)
    known = ", ".join(n for n, c in topology.components.items() if isinstance(c, kind))
    found = "" if comp is None else f"; {name} is kind {comp.kind}"
    raise CannotRunError(
        f"{topology.source}: no {label} component {name!r}{found} "
        f"({label} components: {known or 'none'})"
    )


def instance_at(topology: Topology, component: str, index: int) -> Instance:
    """Instance `index` of `component`; CannotRunError naming the indexes there are."""
    instances = topology.instances[component]
    if not 0 <= index < len(instances):
        raise CannotRunError(
            f"{where(topology, component)}: {component} has instances "
            f"0..{len(instances) - 1}, not {index}"
        )
    return instances[index]


def etcd_component(
    topology: Topology, name: str | None, at: Sequence[str | int], field: str
) -> str:
    """The etcd component `name` (given in `field`, under `components.<at>`), or the only one."""
    etcds = [n for n, c in topology.components.items() if isinstance(c, EtcdComponent)]
    if name is None:
        if len(etcds) != 1:
            raise CannotRunError(
                f"{where(topology, *at)}: name the etcd component that decides in `{field}` "
                f"(etcd components: {', '.join(etcds) or 'none'})"
            )
        return etcds[0]
    if name not in etcds:
        raise CannotRunError(f"{where(topology, *at)}: {field}: no etcd component {name!r}")
    return name


def tls_on(topology: Topology) -> bool:
    """Whether the topology's parts speak TLS (`security: {tls: true}`, the default):
    PostgreSQL between members and to clients, etcd to clients and between members."""
    return SecuritySpec.model_validate(topology.data.get("security") or {}).tls


def etcd_client_urls(topology: Topology, etcd: str) -> tuple[str, ...]:
    """The client URL of each member of etcd component `etcd`, in instance order:
    https with TLS on (spofless.security has the certificates), else http."""
    scheme = "https" if tls_on(topology) else "http"
    urls = []
    for inst in topology.instances[etcd]:
        address = topology.address_of(inst)
        if address is None:
            raise CannotRunError(f"{where(topology, etcd)}: etcd component {etcd} needs a `port`")
        urls.append(f"{scheme}://{address}")
    return tuple(urls)


def vip_claim_key(topology: Topology, lb: str, region: str | None = None) -> str:
    """The etcd key under which the VIP agents of load balancer `lb` claim its address;
    with per-region addresses, the agents in `region` claim theirs one level below."""
    base = f"/spofless/{topology.name}/vip/{lb}"
    return base if region is None else f"{base}/{region}"


def _kind_name(kind: type[Component]) -> str:
    field = kind.model_fields.get("kind")
    annotation = getattr(field, "annotation", None)
    args = getattr(annotation, "__args__", ())
    return str(args[0]) if args else kind.__name__
