"""`spofless lab`: every host of a topology as a network namespace, and faults."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from spofless.cli._root import main, topology_of

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

    made = Lab.up(topology_of(file), state_dir)
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
