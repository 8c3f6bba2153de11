"""The topology file: schema, loading with file:line errors, resolved elements."""

from spofless.topology._errors import Problem, TopologyError
from spofless.topology._load import (
    field_path,
    load_topology,
    load_topology_text,
    topology_from_data,
)
from spofless.topology._model import Host, Instance, Location, Topology, instance_element
from spofless.topology._schema import (
    RUNTIME_KINDS,
    AnalysisOnlyComponent,
    AvailabilityDefaults,
    Component,
    DnsComponent,
    DnsRateLimit,
    DnsRecordSpec,
    EtcdComponent,
    HealthCheck,
    LoadBalancerComponent,
    PostgresComponent,
    RuntimeComponent,
    ServiceComponent,
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
    "LoadBalancerComponent",
    "Location",
    "PostgresComponent",
    "Problem",
    "RuntimeComponent",
    "ServiceComponent",
    "Topology",
    "TopologyError",
    "field_path",
    "instance_element",
    "load_topology",
    "load_topology_text",
    "topology_from_data",
]
