"""The topology file: schema, loading with file:line errors, resolved elements."""

from spofless.topology._errors import Problem, TopologyError
from spofless.topology._kinds import (
    RUNTIME_KINDS,
    DnsComponent,
    DnsRateLimit,
    DnsRecordSpec,
    EtcdComponent,
    LbOptions,
    LbRoute,
    LoadBalancerComponent,
    PostgresComponent,
    ServiceComponent,
    VipSpec,
)
from spofless.topology._load import (
    field_path,
    load_topology,
    load_topology_text,
    topology_from_data,
)
from spofless.topology._model import Host, Instance, Location, Topology, instance_element
from spofless.topology._schema import (
    AnalysisOnlyComponent,
    AvailabilityDefaults,
    Component,
    HealthCheck,
    LabLinks,
    LabSpec,
    LinkSpec,
    RouteHealthCheck,
    RuntimeComponent,
)

__all__ = [
    "RUNTIME_KINDS",
    "AnalysisOnlyComponent",
    "AvailabilityDefaults",
    "Component",
    "DnsComponent",
    "DnsRateLimit",
    "DnsRecordSpec",
    "EtcdComponent",
    "HealthCheck",
    "Host",
    "Instance",
    "LabLinks",
    "LabSpec",
    "LbOptions",
    "LbRoute",
    "LinkSpec",
    "LoadBalancerComponent",
    "Location",
    "PostgresComponent",
    "Problem",
    "RouteHealthCheck",
    "RuntimeComponent",
    "ServiceComponent",
    "Topology",
    "TopologyError",
    "VipSpec",
    "field_path",
    "instance_element",
    "load_topology",
    "load_topology_text",
    "topology_from_data",
]
