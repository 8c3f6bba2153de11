"""The VIP agent's errors.

SpoflessError
├── VipError             the address cannot be configured, found or managed as asked
└── CannotRunError       (spofless.topology) the topology does not say enough to run
                         this agent
"""

from spofless.errors import SpoflessError


class VipError(SpoflessError):
    """The address cannot be configured, found or managed as asked."""
