"""`spofless rollout`: change a running component one instance at a time, never opening
a single point of failure."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import click

from spofless.cli._root import main, topology_of


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--component", "-c", default=None, help="The component to roll out.")
@click.option(
    "--run",
    "run",
    default=None,
    help="Kind service: the new command, with {port} {host} {index} {state_dir} as in "
    "`run:`. Without it each instance restarts with the file's settings. The new command "
    "lasts until the stack stops; put it in FILE to keep it.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The state dir `up` uses. Default: .spofless/<file name without .yaml> next to FILE.",
)
@click.option(
    "--allow-spof",
    is_flag=True,
    help="Go on when taking an instance out leaves a single point of failure meanwhile.",
)
@click.option(
    "--surge",
    type=click.IntRange(0, 16),
    default=0,
    show_default=True,
    help="Kind service (Kubernetes' maxSurge): start this many temporary instances first, "
    "running the new command on free ports, added to the load balancers once healthy; "
    "then replace the others with redundancy kept; drain and remove the temporary ones "
    "last (also when the rollout fails or dies). `status` shows them as (surge).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for open requests to finish; those still open are cut and counted.",
)
@click.option(
    "--health-timeout",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds a replaced instance has to pass its health check (a PostgreSQL member: "
    "to stream again).",
)
@click.option(
    "--watch",
    type=click.FloatRange(0, 600),
    default=2.0,
    show_default=True,
    help="Seconds the load balancers' counters are watched after readmission; a failed "
    "response from the instance then counts as a failure.",
)
@click.option(
    "--pause-between",
    type=click.FloatRange(0, 3600),
    default=0.0,
    show_default=True,
    help="Seconds to wait between two instances.",
)
@click.option(
    "--on-failure",
    type=click.Choice(["rollback", "pause"]),
    default="rollback",
    show_default=True,
    help="When an instance fails: put its previous command back and stop, or stop as it is.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan and what each step opens; change nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--status", "show_status", is_flag=True, help="Say where the last or running rollout is."
)
@click.option(
    "--abort",
    is_flag=True,
    help="Stop the running rollout (it puts what it drained back in rotation), or put back "
    "what a killed one left drained.",
)
def rollout(
    file: str,
    component: str,
    run: str | None,
    state_dir: Path | None,
    allow_spof: bool,
    surge: int,
    drain_timeout: float,
    health_timeout: float,
    watch: float,
    pause_between: float,
    on_failure: str,
    dry_run: bool,
    as_json: bool,
    show_status: bool,
    abort: bool,
) -> None:
    """Replace the running instances of a component one at a time, without an outage.

    Each instance is drained on every load balancer in front of it (until its open
    requests finish, no fixed sleep), replaced by the supervisor `up` started, readmitted
    once its health check passes, and watched; one that fails is rolled back and the
    rollout stops with the others untouched. PostgreSQL: replicas first, then a
    switchover, then the old primary. A step that would leave a single point of failure
    is refused before anything moves (--surge 1 to keep redundancy with a temporary
    instance, or --allow-spof to accept it).

    With an etcd component in FILE, the instances may run under supervisors on several
    machines (`up --host`): the lock, the record and each replacement go through etcd,
    and a rollout whose process dies is aborted by the supervisors, which put what it
    drained back in rotation. --status and --abort then work from any machine.

    Exit status: 0 done, 1 an instance failed (rolled back or stopped), 2 refused.
    """
    from spofless.rollout import RolloutOptions, RolloutResult, coordination_for, prepare
    from spofless.rollout import rollout as run_rollout
    from spofless.stack._commands import running_plan

    topology = topology_of(file)
    plan = running_plan(topology, state_dir)
    if component is None and not (show_status or abort):
        raise click.UsageError("--component is required (or --status, --abort)")
    opts = RolloutOptions(
        run=run,
        allow_spof=allow_spof,
        surge=surge,
        drain_timeout=drain_timeout,
        health_timeout=health_timeout,
        watch=watch,
        pause_between=pause_between,
        on_failure="pause" if on_failure == "pause" else "rollback",
    )
    say = (lambda _: None) if as_json else click.echo

    async def main() -> RolloutResult | None:
        coord = coordination_for(topology, plan.state_dir, lab=plan.lab is not None)
        try:
            if show_status:
                click.echo(await coord.status())
                return None
            if abort:
                await coord.abort(click.echo)
                return None
            assert component is not None
            prepared = await prepare(topology, plan.state_dir, coord, component, opts)
            if dry_run:
                for i, step in enumerate(prepared.plan.steps, 1):
                    click.echo(f"{i}. {step.describe()}")
                drains = ", ".join(a.name for a in prepared.admins) or "none"
                click.echo(f"drained on: {drains}")
                return None
            # Ctrl-C and SIGTERM end it cleanly: what it drained goes back.
            task = asyncio.current_task()
            assert task is not None
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            return await run_rollout(prepared, opts, say)
        finally:
            await coord.close()

    result = asyncio.run(main())
    if result is None:
        return
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
    elif result.ok:
        click.echo(f"rollout of {component} done: {len(result.steps)} steps")
    sys.exit(0 if result.ok else 1)
