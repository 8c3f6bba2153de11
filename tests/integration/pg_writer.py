"""The drill library's SQL writer, under the names the PostgreSQL fault tests use."""

from __future__ import annotations

from spofless.drill.sqlwrite import STATEMENT_BOUND, Ack, WriterReport
from spofless.drill.sqlwrite import SqlWriter as Writer
from spofless.drill.sqlwrite import bounded as _bounded

__all__ = ["STATEMENT_BOUND", "Ack", "Writer", "WriterReport", "_bounded"]
