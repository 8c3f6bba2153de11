"""The cache tier's shard agent: Redis with a leader lease in etcd and fencing.

A shard is one `kind: cache` component: one Redis per instance, each run by an
agent (`spofless cache agent`). The agents of a shard share one etcd lease key;
its holder is the shard's primary, the others replicate from it.

    the primary dies (kill -9, host lost)   its lease expires after the ttl; the
                                            replica with the highest replication
                                            offset takes the lease and is promoted
    the primary's Redis dies, agent lives    the agent resigns at once, restarts Redis
                                            as a replica of whoever takes the lease
    the primary cannot renew its lease      it fences Redis (min-replicas-to-write set
                                            beyond the shard's size: every write gets
                                            NOREPLICAS, reads still served) before the
                                            lease can expire on etcd
    an old primary comes back               it sees the new leader and becomes its
                                            replica (fenced first, then REPLICAOF)
    etcd unreachable                        no promotion; the primary fences itself
                                            when its lease can no longer be proven
    the primary's agent frozen, Redis runs  no renewal, no fencing: a replica is
                                            promoted after the ttl; with
                                            min_replicas_to_write >= 1 the old Redis
                                            refuses writes once the promoted replica
                                            stops replicating from it

No acknowledged write is lost across a failover when the client sends
`WAIT 1 <ms>` after it and counts the write acknowledged only when WAIT says a
replica has it: the promoted replica is the one with the most of the stream.

    CacheSettings, cache_settings(topology, component, index, state_dir)
    CacheAgent(settings, store)              observe -> decide(view) -> act
    decide(view) -> Decision                 the pure rule (spofless.cache.decide)
    REDIS_PIDFILE                            redis-server's pid, in the member's data dir
"""

from spofless.cache._redis import PIDFILE as REDIS_PIDFILE
from spofless.cache._settings import CacheSettings, cache_settings, shard_prefix
from spofless.cache.agent import CacheAgent
from spofless.cache.decide import Action, Decision, Member, View, decide

__all__ = [
    "REDIS_PIDFILE",
    "Action",
    "CacheAgent",
    "CacheSettings",
    "Decision",
    "Member",
    "View",
    "cache_settings",
    "decide",
    "shard_prefix",
]
