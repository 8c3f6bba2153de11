"""The root of spofless's exceptions.

    SpoflessError                 any error spofless reports to a user without a traceback
    ├── TopologyError             (spofless.topology) invalid topology file
    └── ...                       each layer adds its own under this root

The CLI prints a SpoflessError's message and exits 2; anything else is a bug
and keeps its traceback.
"""


class SpoflessError(Exception):
    """An error with a message meant for the user."""
