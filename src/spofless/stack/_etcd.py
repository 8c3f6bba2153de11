"""etcd members as stack instances: their command lines come from spofless.dcs.etcd_server."""

from __future__ import annotations

from collections.abc import Sequence

from spofless.stack._plan import EtcdArgv, EtcdMemberSpec


def etcd_argv_builder() -> EtcdArgv | None:
    """The builder of etcd member command lines, or None while spofless.dcs is missing."""
    try:
        from spofless.dcs import etcd_server  # noqa: F401
    except ImportError:
        return None
    return _member_argv


def _member_argv(spec: EtcdMemberSpec) -> Sequence[str]:
    raise NotImplementedError("wired once spofless.dcs.etcd_server is merged")
