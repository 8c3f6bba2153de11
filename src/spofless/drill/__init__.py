"""Breaking a running system on purpose and measuring what its clients saw.

    plans      what a drill does, as data: a scenario of the file's `drills:`, "prove the
               analysis" (every element alone), or a seeded random schedule (pure)
    schedule   the seeded fault schedule, shared with the randomized test suite (pure)
    system     the running system as `spofless status` reports it; status snapshots
    faults     kill / stop / pause / resume / switchover, and in the lab cut / partition /
               latency / loss, each with its undo
    traffic    HTTP, TCP and SQL-write streams, every request recorded with its time
    sqlwrite   SQL writers with unique ids: acknowledged, failed, uncertain
    runner     run_drill: steady state, phases, events, abort, every fault taken back
    measure    outage windows, time to detect and recover, events, RPO (pure)
    checker    the set checker: lost, phantom, divergent (pure)
    assertions `rto < 5s`: a small comparison language, no eval (pure)
    report     the figures as one document; text, json, junit (html in `html`)
    history    past drills in the state dir's SQLite file

Dependencies point down: plans and measure use nothing of the runtime; runner uses
system, faults and traffic; report uses the runner's result. The CLI (`spofless
drill`) is in spofless.cli._drill.
"""

from spofless.drill.checker import DataVerdict, check_data
from spofless.drill.errors import DrillError
from spofless.drill.schedule import FAULT_KINDS, FaultKind, ScheduledFault, draw_schedule
from spofless.drill.sqlwrite import Ack, Attempt, SqlWriter, WriterReport

__all__ = [
    "FAULT_KINDS",
    "Ack",
    "Attempt",
    "DataVerdict",
    "DrillError",
    "FaultKind",
    "ScheduledFault",
    "SqlWriter",
    "WriterReport",
    "check_data",
    "draw_schedule",
]
