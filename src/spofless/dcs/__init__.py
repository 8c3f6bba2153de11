"""Coordination on etcd: a key-value store interface, leases, leader election with fencing."""
