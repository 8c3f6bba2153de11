"""Coordination on etcd: a key-value store interface, leases, leader election with fencing.

    KeyValueStore            the interface (contract in its docstring)
    ├── EtcdStore            etcd v3 through its JSON gateway, with member failover
    └── MemoryStore          in this process, same semantics, clock under control
    campaign(store, key, value, settings) -> Leadership   fencing token, `lost`, resign()
    try_campaign(...) -> Leadership | KeyValue            one attempt: held, or who holds it
    DCSSettings              every timing (ttl, renew interval, timeouts) and its invariants,
                             and the client certificate (EtcdTls) for members with TLS
    spofless.dcs.etcd_server what to run for an etcd member, and a process helper

Exceptions (see spofless.dcs._errors):

    SpoflessError
    └── DCSError
        ├── DCSUnavailable   retry on the next cycle
        ├── CompactedError   re-read, watch from the current revision
        ├── LeaseNotFound    the lease and its keys are gone
        ├── DCSRequestError  the request itself was wrong
        └── LeadershipLost   fatal for that leadership
"""

from spofless.dcs._election import Leadership, campaign, try_campaign
from spofless.dcs._errors import (
    CompactedError,
    DCSError,
    DCSRequestError,
    DCSUnavailable,
    LeadershipLost,
    LeaseNotFound,
)
from spofless.dcs._etcd import EtcdStore
from spofless.dcs._lease import LeaderLease
from spofless.dcs._memory import ManualClock, MemoryStore
from spofless.dcs._settings import DCSSettings, lease_settings
from spofless.dcs._store import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    KeyValueStore,
    Lease,
    Op,
    Put,
    RangeResult,
    TxnResult,
    Watch,
)
from spofless.dcs._tls import EtcdTls

__all__ = [
    "CompactedError",
    "Compare",
    "DCSError",
    "DCSRequestError",
    "DCSSettings",
    "DCSUnavailable",
    "Delete",
    "EtcdStore",
    "EtcdTls",
    "Event",
    "Get",
    "KeyValue",
    "KeyValueStore",
    "LeaderLease",
    "Leadership",
    "LeadershipLost",
    "Lease",
    "LeaseNotFound",
    "ManualClock",
    "MemoryStore",
    "Op",
    "Put",
    "RangeResult",
    "TxnResult",
    "Watch",
    "campaign",
    "lease_settings",
    "try_campaign",
]
