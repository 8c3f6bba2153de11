"""Breaking a running system on purpose and measuring what its clients saw.

The parts every drill shares, and that the randomized fault tests use as they are:

- `schedule`: a seeded, reproducible sequence of faults (a Jepsen-style nemesis);
- `sqlwrite`: SQL writers inserting unique ids, recording each outcome
  (acknowledged, failed, uncertain) with the server that answered and the time;
- `checker`: the set checker: acknowledged writes missing at the end, writes that
  appear without having been attempted, members that disagree with the primary.

The pure parts (schedule, checker) are unit-tested without processes.
"""

from spofless.drill.checker import DataVerdict, check_data
from spofless.drill.schedule import FAULT_KINDS, FaultKind, ScheduledFault, draw_schedule
from spofless.drill.sqlwrite import Ack, Attempt, SqlWriter, WriterReport

__all__ = [
    "FAULT_KINDS",
    "Ack",
    "Attempt",
    "DataVerdict",
    "FaultKind",
    "ScheduledFault",
    "SqlWriter",
    "WriterReport",
    "check_data",
    "draw_schedule",
]
