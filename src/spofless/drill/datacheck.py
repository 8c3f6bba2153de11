"""The data check after a drill: every acknowledged SQL write must be on the primary,
none may come from nowhere, and every member must hold exactly the primary's rows.

The writes' ids of one drill lie in a range of their own (see runner.run_drill), so
rows of earlier drills in the same table are not counted. Members are read until they
agree with the primary or CATCH_UP_BOUND passes (a replica still replaying is not a
divergence, one that never catches up is).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg

from spofless.drill.checker import check_data
from spofless.drill.system import System
from spofless.drill.traffic import SqlStream, Stream

if TYPE_CHECKING:
    from spofless.drill.runner import DrillResult

CATCH_UP_BOUND = 30.0  # seconds for every replica to replay the primary's writes at the end


def check_writes(system: System, result: DrillResult, streams: list[Stream], first: int) -> None:
    """The set checker over this drill's SQL writes (ids from `first`), into `result`:
    every member read until it holds the primary's rows (CATCH_UP_BOUND), then checked."""
    sql = [s for s in streams if isinstance(s, SqlStream) and s.writer is not None]
    if not sql:
        return
    from spofless.security import client_params

    attempted: list[int] = []
    acked: list[int] = []
    uncertain: list[int] = []
    for s in sql:
        attempted += s.report.attempted
        acked += s.report.acknowledged
        uncertain += s.report.uncertain
        result.acked_at.update(s.acked_at())
    docs: list[dict[str, Any]] = list(system.document()["instances"])
    pg_components = {d["component"] for d in docs if d["kind"] == "postgres"}
    if len(pg_components) != 1:
        result.data_note = "data not checked: the writes' postgres component is not one"
        return
    (comp,) = pg_components
    params = client_params(system.running, comp)
    members = [d for d in docs if d["component"] == comp and d.get("dsn")]
    primary = next((d for d in members if d.get("role") == "primary"), None)
    if primary is None:
        result.data_note = f"data not checked: {comp} has no primary at the end"
        return
    table = sql[0].table
    last = first + 10**9  # the range of this drill (see run_drill)

    def ids(dsn: str) -> set[int]:
        from psycopg.conninfo import make_conninfo

        with psycopg.connect(
            make_conninfo(dsn, connect_timeout=5, **params), autocommit=True
        ) as conn:
            rows = conn.execute(
                f"SELECT id FROM {table} WHERE id >= %s AND id < %s", (first, last)
            ).fetchall()
        return {int(r[0]) for r in rows}

    deadline = time.monotonic() + CATCH_UP_BOUND
    held: dict[str, set[int]] = {}
    while True:
        try:
            held = {d["name"]: ids(d["dsn"]) for d in members}
        except psycopg.Error as exc:
            result.data_note = f"a member could not be read: {exc}"
            held = {}
        if held and all(v == held[primary["name"]] for v in held.values()):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if primary["name"] not in held:
        result.data_note = result.data_note or "data not checked: the primary could not be read"
        return
    result.data = check_data(attempted, acked, uncertain, primary["name"], held)
