"""spofless: make a system free of single points of failure, and prove it."""

__version__ = "0.1.0"
