"""The detached supervisor: `python -m spofless.stack._daemon [options] FILE`.

Started by `spofless up --detach` in its own session, output to the state
dir's supervisor.log. It plans from the same file with the same options as
`up` (which already ran the checks) and runs the same Supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from spofless._logging import setup_logging
from spofless.errors import SpoflessError
from spofless.stack._commands import make_plan
from spofless.stack._errors import StackError
from spofless.stack._lab import recorded_lab
from spofless.stack._supervisor import Supervisor, SupervisorSettings
from spofless.topology import load_topology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spofless.stack._daemon")
    parser.add_argument("file")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--stop-grace", type=float, default=10.0)
    parser.add_argument("--lab", action="store_true", help="run in the lab `up` recorded")
    args = parser.parse_args(argv)
    setup_logging("stack")
    try:
        state_dir = Path(args.state_dir)
        lab = recorded_lab(state_dir) if args.lab else None
        if args.lab and lab is None:
            raise StackError(f"--lab: no lab recorded in {state_dir}")
        plan = make_plan(load_topology(args.file), state_dir, args.host, lab)
        settings = SupervisorSettings(start_timeout=args.timeout, stop_grace=args.stop_grace)
        return asyncio.run(Supervisor(plan, settings).run())
    except SpoflessError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
