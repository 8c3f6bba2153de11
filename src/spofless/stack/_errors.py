"""Errors of the stack runner.

SpoflessError                 (spofless.errors)
└── StackError                `up`/`down`/`status`/`logs` cannot do what was asked; nothing
    │                         was left half-started
    ├── LbAdminError          a load balancer's admin API refused (spofless.stack._lb_admin)
    ├── PortInUseError        a port the topology gives an instance is taken
    ├── SpofFoundError        the topology has a single point of failure (no --allow-spof)
    └── StartError            an instance or the supervisor could not start; all was stopped
"""

from __future__ import annotations

from spofless.errors import SpoflessError


class StackError(SpoflessError):
    """A stack command cannot do what was asked. The message says why and what to do."""


class PortInUseError(StackError):
    """One or more ports the topology assigns are already taken on this machine."""


class SpofFoundError(StackError):
    """`up` refused a topology with a single point of failure; the message has the findings."""


class StartError(StackError):
    """Starting the stack failed; everything that had started was stopped again."""
