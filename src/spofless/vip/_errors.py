"""The VIP agent's errors.

SpoflessError
└── VipError             the address cannot be configured, found or managed as asked
    └── VipConfigError   the topology does not say enough to run this VIP agent
"""

from spofless.errors import SpoflessError


class VipError(SpoflessError):
    """The address cannot be configured, found or managed as asked."""


class VipConfigError(VipError):
    """The topology does not say enough (or says something wrong) to run this agent."""
