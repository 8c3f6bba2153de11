"""PostgreSQL backups: continuous WAL archiving, base backups, point-in-time restore.

(Public API and the full rules are filled in below as the layer grows.)
"""
