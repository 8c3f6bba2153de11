"""The redundant entry points: health-checked DNS (`spofless dns`) and the floating
address (`spofless vip`).
"""

from __future__ import annotations

import click

from spofless.cli._root import main, topology_of


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
    from spofless import dns
    from spofless._logging import setup_logging

    settings = dns.dns_settings(topology_of(file), component, index, port=port)
    setup_logging(f"{component}/{index}")
    dns.run(settings)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--component", required=True, help="The load_balancer component with a `vip:`.")
@click.option("--instance", type=click.IntRange(0), required=True, help="Its instance index.")
def vip(file: str, component: str, instance: int) -> None:
    """Run the floating-address agent beside one load balancer instance (Linux, root).

    \b
      spofless vip shop.yaml --component lb --instance 0

    Exactly one instance holds `vip.address` (with `vip.addresses`: one instance per
    region holds its region's), elected through etcd, announced with gratuitous ARP,
    and given up as soon as this instance's load balancer fails its check or the claim
    cannot be renewed. SIGTERM or SIGINT removes the address and hands it over at once.
    """
    from spofless.vip import run_vip, vip_settings

    run_vip(vip_settings(topology_of(file), component, instance))
