"""The lab's errors.

SpoflessError
└── LabError              a lab cannot be built, found or changed as asked
    └── LabUnavailable    this machine cannot host a lab (not root, no namespaces)
"""

from spofless.errors import SpoflessError


class LabError(SpoflessError):
    """A lab cannot be built, found or changed as asked."""


class LabUnavailable(LabError):
    """This machine cannot host a lab: not root, or network namespaces are missing."""
