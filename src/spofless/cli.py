"""The command line: parse, build the validated topology, call one function.

Exit status everywhere: 0 success, 1 a finding (e.g. a single point of
failure), 2 invalid input or a user error (message, never a traceback).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from spofless import __version__
from spofless.errors import SpoflessError
from spofless.topology import Topology, load_topology

EXIT_INVALID = 2


class _Group(click.Group):
    """Turns every SpoflessError into its message and exit status 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SpoflessError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spofless")
def main() -> None:
    """Make a system free of single points of failure, and prove it."""


def _topology(path: str) -> Topology:
    return load_topology(Path(path))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--max-order",
    type=click.IntRange(1, 4),
    default=2,
    show_default=True,
    help="Largest size of the minimal cut sets to list.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "sarif"]),
    default="text",
    show_default=True,
    help="Report format.",
)
def check(file: str, max_order: int, fmt: str) -> None:
    """Find every single point of failure of FILE and its exact availability.

    Exit status: 0 with no single point of failure, 1 with at least one,
    2 when FILE is not a valid topology.
    """
    from spofless.analysis import analyze, render

    report = analyze(_topology(file), max_order=max_order)
    # click.echo drops the colours when stdout is not a terminal.
    click.echo(render(report, fmt, color=True), nl=False)
    sys.exit(0 if report.ok else 1)


# -- stack: up / down / status / logs ----------------------------------------------

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where pids, state and logs live. Default: .spofless/<file name without .yaml> "
    "next to FILE. up, status, logs and down must agree on it.",
)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="Run only the instances placed on HOST (repeatable). Default: every host.",
)
@_state_dir_option
@click.option("--detach", "-d", is_flag=True, help="Run the supervisor in the background.")
@click.option(
    "--wait", is_flag=True, help="With --detach (implied): also wait until all are healthy."
)
@click.option(
    "--allow-spof", is_flag=True, help="Run a topology with a single point of failure anyway."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for dependencies, startup and (--wait) health.",
)
@click.option(
    "--lab",
    is_flag=True,
    help="Every host in its own network namespace (see `spofless lab`; Linux, root). "
    "Without root: said, and run as without --lab.",
)
def up(
    file: str,
    hosts: tuple[str, ...],
    state_dir: Path | None,
    detach: bool,
    wait: bool,
    allow_spof: bool,
    timeout: float,
    lab: bool,
) -> None:
    """Start the instances FILE places on this machine and supervise them.

    Refuses a topology with a single point of failure (see `spofless check`)
    unless --allow-spof. Kinds spofless cannot run are skipped with a note.
    With --lab, `down` also removes the lab.
    """
    from spofless import stack

    settings = stack.SupervisorSettings(start_timeout=timeout)
    stack.up(
        _topology(file),
        state_dir,
        hosts,
        click.echo,
        detach=detach,
        wait=wait,
        allow_spof=allow_spof,
        settings=settings,
        lab=lab,
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
def down(file: str, state_dir: Path | None) -> None:
    """Stop everything `up` started from FILE: SIGTERM, then SIGKILL after 10s."""
    from spofless import stack

    stack.down(stack.running_plan(_topology(file), state_dir), click.echo)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (key `instances`).")
def status(file: str, state_dir: Path | None, as_json: bool) -> None:
    """Show every instance of FILE on this machine: state, health, pid, ports, restarts."""
    import json

    from rich.console import Console

    from spofless import stack

    doc = stack.status(stack.running_plan(_topology(file), state_dir))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        # Piped output is not cut to 80 columns: scripts grep it.
        wide = None if sys.stdout.isatty() else 250
        Console(width=wide, soft_wrap=wide is not None).print(stack.render_status(doc))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("instance", required=False)
@_state_dir_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--tail", "-n", "lines", type=click.IntRange(0), default=100, show_default=True)
def logs(file: str, instance: str | None, state_dir: Path | None, follow: bool, lines: int) -> None:
    """Print the logs of INSTANCE (`web` or `web/1`; default: all) of FILE."""
    from spofless import stack

    plan = stack.running_plan(_topology(file), state_dir)
    with contextlib.suppress(KeyboardInterrupt):
        stack.logs(plan, instance, follow, lines, sys.stdout)


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--component", help="With FILE: the load_balancer component to run.")
@click.option("--instance", type=int, default=0, show_default=True, help="With FILE: its index.")
@click.option("--listen", help="Standalone: host:port to listen on.")
@click.option(
    "--backend", "backends", multiple=True, help="Standalone: host:port[,weight]; repeat."
)
@click.option("--mode", type=click.Choice(["http", "tcp"]), default="http", show_default=True)
@click.option(
    "--algorithm",
    type=click.Choice(
        ["round_robin", "weighted_round_robin", "least_connections", "two_choices", "hash"]
    ),
    default="round_robin",
    show_default=True,
)
@click.option(
    "--hash-key", default="source", show_default=True, help="source|path|header:N|cookie:N"
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--admin", help="Standalone: host:port of the admin API.")
@click.option("--admin-token", envvar="SPOFLESS_ADMIN_TOKEN", help="Bearer token of the admin API.")
@click.option(
    "--health",
    type=click.Choice(["tcp", "http"]),
    help="Health check type [default: http GET / (any status < 500) in http mode, else tcp].",
)
@click.option("--health-path", default="/", show_default=True)
@click.option(
    "--health-send",
    help=r"tcp check: bytes to send after connecting (\r \n \t \\ are decoded).",
)
@click.option(
    "--health-expect",
    help="tcp check: what the answer must contain; without it a connect alone counts,"
    " which cannot see a frozen backend.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Standalone: any option of a topology's `lb:` mapping, e.g. --set header_timeout=2"
    " --set max_conns_per_backend=100; repeat.",
)
def lb(
    file: str | None,
    component: str | None,
    instance: int,
    listen: str | None,
    backends: tuple[str, ...],
    mode: str,
    algorithm: str,
    hash_key: str,
    workers: int,
    admin: str | None,
    admin_token: str | None,
    health: str | None,
    health_path: str,
    health_send: str | None,
    health_expect: str | None,
    sets: tuple[str, ...],
) -> None:
    """Run a load balancer: from a topology FILE, or standalone with --listen and --backend.

    \b
      spofless lb shop.yaml --component lb --instance 0
      spofless lb --listen 127.0.0.1:8080 --backend 127.0.0.1:9001 --backend 127.0.0.1:9002

    SIGHUP reloads (FILE mode re-reads the file), SIGTERM stops gracefully.
    """
    from pydantic import ValidationError

    from spofless.lb import LbConfigError, run_lb, settings_from_flags, settings_from_topology
    from spofless.topology import HealthCheck, LbOptions

    if file is not None:
        if listen or backends:
            raise LbConfigError("give either FILE or --listen/--backend, not both")
        if sets or health or health_send is not None or health_expect is not None:
            raise LbConfigError(
                "--set and --health* are for standalone use; with FILE use the component's"
                " `lb:` mapping and the target's `health:`"
            )
        if component is None:
            raise LbConfigError("FILE needs --component (the load_balancer to run)")
        path, comp = file, component

        def build() -> object:
            return settings_from_topology(_topology(path), comp, instance)

    else:
        if not listen:
            raise LbConfigError("give FILE --component C, or --listen and --backend")
        given: dict[str, str] = {"algorithm": algorithm, "hash_key": hash_key}
        for item in sets:
            name, eq, value = item.partition("=")
            if not eq:
                raise LbConfigError(f"--set {item!r}: give NAME=VALUE")
            given[name.strip()] = value.strip()
        try:
            options = LbOptions.model_validate(given)
            check = None
            if health or health_send is not None or health_expect is not None:
                fields: dict[str, object] = {"type": health or "tcp"}
                if (health or "tcp") == "http":
                    fields["path"] = health_path
                if health_send is not None:
                    fields["send"] = _unescape(health_send)
                if health_expect is not None:
                    fields["expect"] = _unescape(health_expect)
                check = HealthCheck.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise LbConfigError(f"invalid option {where or 'health check'}: {err['msg']}") from None
        listen_ = listen

        def build() -> object:
            return settings_from_flags(
                listen=listen_,
                backends=list(backends),
                mode=mode,
                workers=workers,
                admin=admin,
                admin_token=admin_token,
                health=check,
                options=options,
            )

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = build()
    run_lb(settings, reload=build)  # type: ignore[arg-type]


def _unescape(text: str) -> str:
    """`\\r`, `\\n`, `\\t` and `\\\\` typed on a command line, as the characters."""
    table = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# -- the lab: hosts as network namespaces (spofless.lab) ---------------------------------

_LAB_STATE = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="SPOFLESS_LAB_STATE_DIR",
    help="Where lab state files live (default /run/spofless/lab).",
)


@main.group()
@_LAB_STATE
@click.pass_context
def lab(ctx: click.Context, state_dir: Path | None) -> None:
    """Every host of a topology as a network namespace on this machine (Linux, root).

    Hosts get addresses from `lab: {subnet: ...}` (default 10.77.0.0/16), one bridge per
    zone, links between zones and regions with the file's latency and loss. Nothing of
    this machine's own network is touched. Exit status 2 without root or namespaces.
    """
    ctx.obj = state_dir


def _lab_of(file: str, state_dir: Path | None) -> Any:
    from spofless.lab import DEFAULT_STATE_DIR, Lab, lab_id_for_path

    return Lab(lab_id_for_path(file), state_dir or DEFAULT_STATE_DIR)


@lab.command("up")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def lab_up(state_dir: Path | None, file: str) -> None:
    """Make the lab of FILE: namespaces, bridges, links, addresses."""
    from spofless.lab import Lab

    made = Lab.up(_topology(file), state_dir)
    plan = made.plan
    click.echo(
        f"lab {made.lab_id} up: {len(plan.hosts)} hosts, {len(plan.links)} links ({plan.backend})"
    )
    for host in plan.hosts.values():
        click.echo(
            f"  {host.name:<20} {host.address:<15} {host.zone or '-':<20} netns {host.netns}"
        )


@lab.command("down")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def lab_down(state_dir: Path | None, file: str) -> None:
    """Remove the lab of FILE and everything running in it (FILE need not be valid)."""
    removed = _lab_of(file, state_dir).down()
    click.echo(f"lab down: removed {len(removed)} namespace(s)")


@lab.command("status")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def lab_status(state_dir: Path | None, file: str, as_json: bool) -> None:
    """Show the lab of FILE: hosts, addresses, links, faults. Exit 1 when it is not up."""
    import json

    st = _lab_of(file, state_dir).status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
    elif "hosts" not in st:
        left = st["leftover_namespaces"]
        click.echo(f"lab {st['lab']}: not up" + (f" (leftover namespaces: {left})" if left else ""))
    else:
        relay = "" if st["relay_pid"] is None else f", relay pid {st['relay_pid']}"
        relay += "" if st["relay_alive"] in (None, True) else " (NOT RUNNING)"
        up = "up" if st["up"] else "BROKEN"
        click.echo(f"lab {st['lab']} {up}: {st['subnet']}, links by {st['backend']}{relay}")
        for h in st["hosts"]:
            cut = "  CUT" if h["cut"] else ""
            click.echo(
                f"  host {h['host']:<18} {h['address']:<15} {h['zone'] or '-':<16} "
                f"{h['processes']} process(es){cut}"
            )
        for lk in st["links"]:
            imp = lk["per_crossing"]
            fault = " (fault)" if lk["fault"] else ""
            cut = "  CUT" if lk["cut"] else ""
            click.echo(
                f"  link {lk['link']:<20} {imp['delay_ms']:g} ms ±{imp['jitter_ms']:g} "
                f"loss {imp['loss_pct']:g}% per crossing{fault}{cut}"
            )
    sys.exit(0 if st["up"] else 1)


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def lab_exec(state_dir: Path | None, file: str, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside HOST's namespace (e.g. `lab exec FILE web1 -- curl ...`)."""
    import os

    argv = _lab_of(file, state_dir).argv(host, command)
    os.execvp(argv[0], argv)


@lab.group("fault")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def lab_fault(ctx: click.Context, file: str) -> None:
    """Break the lab of FILE on purpose, and restore it.

    ELEMENT is host:NAME, zone:REGION/ZONE or region:NAME (a bare name is a host,
    A/B a zone). `cut` detaches the element's cable on the switch side: the host keeps
    its link up and sees its peers fall silent, like a partition.
    """
    ctx.obj = _lab_of(file, ctx.obj)


@lab_fault.command("cut")
@click.argument("elements", nargs=-1, required=True)
@click.pass_obj
def fault_cut(lab: Any, elements: tuple[str, ...]) -> None:
    """Cut ELEMENTS off the rest of the lab."""
    for element in elements:
        click.echo(f"cut {lab.cut(element)}")


@lab_fault.command("restore")
@click.argument("elements", nargs=-1)
@click.pass_obj
def fault_restore(lab: Any, elements: tuple[str, ...]) -> None:
    """Undo cuts, latency and loss on ELEMENTS (on everything when none is given)."""
    restored = [r for e in elements for r in lab.restore(e)] if elements else lab.restore()
    click.echo("restored " + (", ".join(restored) or "nothing"))


@lab_fault.command("latency")
@click.argument("element")
@click.argument("ms", type=click.FloatRange(0, 10_000))
@click.option("--jitter", type=click.FloatRange(0, 10_000), default=0.0, help="Jitter, ms.")
@click.pass_obj
def fault_latency(lab: Any, element: str, ms: float, jitter: float) -> None:
    """Add MS of delay to each crossing of a zone or region link, each way."""
    click.echo(f"{lab.impair(element, latency_ms=ms, jitter_ms=jitter)}: +{ms:g} ms")


@lab_fault.command("loss")
@click.argument("element")
@click.argument("pct", type=click.FloatRange(0, 100, max_open=True))
@click.pass_obj
def fault_loss(lab: Any, element: str, pct: float) -> None:
    """Drop PCT percent of the packets crossing a zone or region link, each way."""
    click.echo(f"{lab.impair(element, loss_pct=pct)}: {pct:g}% loss")


def _host_signal(action: str, doc: str) -> None:
    @lab_fault.command(action, help=doc)
    @click.argument("host")
    @click.pass_obj
    def command(lab: Any, host: str) -> None:
        pids = getattr(lab, action)(host)
        click.echo(f"{action} {host}: {len(pids)} process(es) {pids}")


_host_signal("pause", "SIGSTOP every process in HOST's namespace.")
_host_signal("resume", "SIGCONT every process in HOST's namespace.")
_host_signal("kill", "SIGKILL every process in HOST's namespace.")


# -- dns ---------------------------------------------------------------------------


@main.command("dns")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--component", default="dns", show_default=True, help="The `kind: dns` component to run."
)
@click.option(
    "--instance",
    "index",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Which of its instances (0-based): listens on its host's address, port + instance.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen on this port instead (0: any free port, logged). Default: from FILE.",
)
def dns_command(file: str, component: str, index: int, port: int | None) -> None:
    """Run one instance of a health-checked authoritative DNS server from FILE.

    Answers A/AAAA for the component's `records` with the addresses of the
    instances whose health checks pass (all of them when none pass), over UDP
    and TCP, until SIGTERM or SIGINT.
    """
    import logging

    from spofless import dns

    settings = dns.dns_settings(_topology(file), component, index, port=port)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    dns.run(settings)


# -- the floating virtual IP (spofless.vip) ------------------------------------------


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--component", required=True, help="The load_balancer component with a `vip:`.")
@click.option("--instance", type=click.IntRange(0), required=True, help="Its instance index.")
def vip(file: str, component: str, instance: int) -> None:
    """Run the floating-address agent beside one load balancer instance (Linux, root).

    \b
      spofless vip shop.yaml --component lb --instance 0

    Exactly one instance holds `vip.address`, elected through etcd, announced with
    gratuitous ARP, and given up as soon as this instance's load balancer fails its
    check or the claim cannot be renewed. SIGTERM or SIGINT removes the address and
    hands it over at once.
    """
    from spofless.vip import config_from_topology, run_vip

    run_vip(config_from_topology(_topology(file), component, instance))


# -- spofless pg: the PostgreSQL HA agent and its operations -------------------------------


@main.group()
def pg() -> None:
    """PostgreSQL with automatic failover: the agent, switchover, pause."""


def _state_dir(file: str, state_dir: str | None) -> Path:
    from spofless.pg._topology import default_state_dir

    return Path(state_dir) if state_dir else default_state_dir(Path(file))


@pg.command("agent")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--component", required=True, help="The postgres component of FILE.")
@click.option("--instance", "index", type=click.IntRange(0), required=True, help="Its index.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where data directories go (default: .spofless/<file stem> beside FILE).",
)
def pg_agent(file: str, component: str, index: int, state_dir: str | None) -> None:
    """Run the agent of one PostgreSQL instance until SIGTERM (the stack runs this)."""
    from spofless.pg.process import agent_main

    agent_main(_topology(file), component, index, _state_dir(file, state_dir))


_component_option = click.option(
    "--component", default=None, help="The postgres component (default: the only one)."
)


@pg.command("pause")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
def pg_pause(file: str, component: str | None) -> None:
    """Turn automatic failover off (maintenance); switchover still works."""
    import asyncio

    from spofless.pg.ops import set_paused, target

    asyncio.run(set_paused(target(_topology(file), component), True))
    click.echo("paused: automatic failover is off until `spofless pg resume`")


@pg.command("resume")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
def pg_resume(file: str, component: str | None) -> None:
    """Turn automatic failover on again."""
    import asyncio

    from spofless.pg.ops import set_paused, target

    asyncio.run(set_paused(target(_topology(file), component), False))
    click.echo("resumed: automatic failover is on")


@pg.command("switchover")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option("--to", "candidate", default=None, help="The member to hand over to.")
@click.option("--wait", "bound", type=float, default=30.0, show_default=True, help="Seconds.")
def pg_switchover(file: str, component: str | None, candidate: str | None, bound: float) -> None:
    """Planned switchover: stop writes, let the candidate catch up, hand the lease over."""
    import asyncio

    from spofless.pg.ops import switchover, target

    old, new = asyncio.run(switchover(target(_topology(file), component), candidate, bound=bound))
    click.echo(f"switched over from {old} to {new}")


@pg.command("failover")
@click.argument("file", type=click.Path(dir_okay=False))
@_component_option
@click.option("--to", "candidate", required=True, help="The member that takes over.")
@click.option("--wait", "bound", type=float, default=30.0, show_default=True, help="Seconds.")
def pg_failover(file: str, component: str | None, candidate: str, bound: float) -> None:
    """Manual failover: CANDIDATE takes the leadership, whoever leads now (or nobody)."""
    import asyncio

    from spofless.pg.ops import switchover, target

    old, new = asyncio.run(
        switchover(target(_topology(file), component), candidate, failover=True, bound=bound)
    )
    click.echo(f"failed over from {old or 'no leader'} to {new}")
