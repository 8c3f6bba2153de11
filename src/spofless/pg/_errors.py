"""The PostgreSQL layer's exceptions.

SpoflessError
└── PgError                    (spofless.pg) anything about the local PostgreSQL
    ├── PgSetupError           fatal: missing binaries, a foreign or wrong-version
    │                          data directory, an unusable OS user; fix and restart
    └── PgCommandError         a PostgreSQL tool or query failed or timed out;
                               the agent retries on a later loop
"""

from spofless.errors import SpoflessError


class PgError(SpoflessError):
    """An error about the local PostgreSQL."""


class PgSetupError(PgError):
    """Fatal: the installation or the data directory cannot be used as it is."""


class PgCommandError(PgError):
    """A PostgreSQL tool or query failed; worth retrying on the next loop."""
