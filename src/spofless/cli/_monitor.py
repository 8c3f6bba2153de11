"""`spofless monitor` runs one monitor instance; `spofless events` lists what monitors saw."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from spofless.cli._root import main, topology_of
from spofless.errors import SpoflessError
from spofless.topology import Topology

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the monitors keep their history (monitor/<component>-<i>.sqlite). "
    "Default: .spofless/<file name without .yaml> next to FILE, as `up` uses.",
)


@main.command("monitor")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--component", required=True, help="The `kind: monitor` component.")
@click.option("--instance", type=click.IntRange(0), required=True, help="Its instance index.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the dashboard, /status and /metrics on this port instead "
    "(0: any free port, logged). Default: the component's port + instance.",
)
@_state_dir_option
def monitor_command(
    file: str, component: str, instance: int, port: int | None, state_dir: Path | None
) -> None:
    """Run one monitor instance from FILE until SIGTERM or SIGINT.

    \b
      spofless monitor shop.yaml --component monitor --instance 0

    It looks at every instance of FILE (status APIs, health checks, PostgreSQL
    roles and streaming, DNS answers, the VIP holder), re-runs the analysis on
    what is down, and alerts the component's receivers when an entry
    component's redundancy shrinks, naming what would now take it down. The
    monitors of a component claim each notification in etcd, so the group
    sends it once. It serves its live dashboard at /, /status and /metrics.
    """
    from spofless._logging import setup_logging
    from spofless.monitor import monitor_settings, run_monitor
    from spofless.stack import default_state_dir

    topology = topology_of(file)
    settings = monitor_settings(
        topology, component, instance, state_dir or default_state_dir(Path(file)), port=port
    )
    setup_logging(settings.me)
    run_monitor(settings)


@main.command("events")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_state_dir_option
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events_command(file: str, state_dir: Path | None, limit: int, as_json: bool) -> None:
    """List what the monitors of FILE recorded, oldest first: instances down and up,
    flapping, failovers, VIP hand-overs, live single points of failure, alerts and
    their notifications. Each monitor's own view is listed (the monitor column)."""
    from spofless.monitor import read_events

    topology = topology_of(file)
    found = _histories(file, topology, state_dir)
    for event in read_events(found, limit):
        if as_json:
            click.echo(json.dumps(event.to_json(), sort_keys=True))
            continue
        when = dt.datetime.fromtimestamp(event.at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        click.echo(f"{when}  {event.monitor:<12} {event.severity:<8} {event.message}")


def _histories(file: str, topology: Topology, state_dir: Path | None) -> list[Path]:
    """The monitors' databases that exist; SpoflessError when there is none."""
    from spofless.monitor import history_path
    from spofless.stack import default_state_dir
    from spofless.topology import MonitorComponent

    base = state_dir or default_state_dir(Path(file))
    paths = [
        history_path(base, inst.component, inst.index)
        for name, comp in topology.components.items()
        if isinstance(comp, MonitorComponent)
        for inst in topology.instances[name]
    ]
    found = [p for p in paths if p.exists()]
    if not found:
        raise SpoflessError(
            f"no monitor history under {base / 'monitor'}: run the monitors "
            f"(`spofless up {file}` or `spofless monitor {file} ...`) first"
        )
    return found


@main.command("trends")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_state_dir_option
@click.option(
    "--threshold",
    type=click.FloatRange(1, 100),
    default=80.0,
    show_default=True,
    help="The share of capacity (percent) projected to: CPU of the cores an instance "
    "can use, memory of the host's, lag of the monitor's max_lag.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per component and gauge.")
def trends_command(file: str, state_dir: Path | None, threshold: float, as_json: bool) -> None:
    """Per component, the growth of its load and when it reaches capacity.

    \b
      spofless trends shop.yaml
      lb  CPU   62% of one core at the daily peak, growing 4.0%/week: 80% in 7 weeks

    From the gauges the monitors of FILE recorded (CPU, memory, requests,
    latency, replication lag): each day's peak (the busiest instance's highest
    1-minute average) over the last 4 weeks, fitted with a compound growth per
    week (Theil-Sen, so one day of a drill moves it little). With less than a
    week of daily peaks it says so rather than guess.
    """
    import time

    from spofless.monitor import component_trends, daily_peaks, read_meta, render_trends

    topology = topology_of(file)
    found = _histories(file, topology, state_dir)
    peaks = daily_peaks(found)
    if not peaks:
        click.echo(
            "no gauges recorded yet: the monitors record them every gauge_interval while "
            "they run, and a trend needs a week of daily peaks"
        )
        return
    trends = component_trends(
        peaks,
        topology,
        cores=read_meta(found, "cores"),
        memory=read_meta(found, "memory"),
        max_lag=read_meta(found, "max_lag"),
        threshold=threshold / 100,
        now=time.time(),
    )
    if as_json:
        for t in trends:
            p = t.projection
            doc = {
                "component": t.component,
                "gauge": t.gauge,
                "state": p.state,
                "days": p.days,
                "level": p.level,
                "capacity": t.capacity,
                "growth_per_week": p.growth,
                "weeks_to_threshold": p.weeks,
            }
            click.echo(json.dumps(doc, sort_keys=True))
        return
    for line in render_trends(trends, threshold / 100):
        click.echo(line)


@main.group("export")
def export_group() -> None:
    """Write what the Prometheus ecosystem reads, for a topology's monitors."""


def _write(data: object, output: Path | None, as_yaml: bool) -> None:
    import sys

    if as_yaml:
        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.default_flow_style = False
        yaml.width = 4096  # PromQL on one line
        if output is None:
            yaml.dump(data, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as out:
                yaml.dump(data, out)
        return
    text = json.dumps(data, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


_output_option = click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)


@export_group.command("prometheus-rules")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_output_option
def export_rules(file: str, output: Path | None) -> None:
    """Alerting rules (a Prometheus rule file in yaml) for the conditions the monitors alert
    on: a component down, redundancy lost, live single points of failure (from the
    monitors' spofless_monitor_live_spofs), an instance down, no monitor answering,
    degraded synchronous replication, replica lag, etcd's quorum at risk or lost, a
    crash loop, a load balancer's CPU near its workers' cores. Scrape the monitors
    (port + i, /metrics) as job spofless-<topology name>."""
    from spofless.monitor import prometheus_rules

    _write(prometheus_rules(topology_of(file)), output, as_yaml=True)


@export_group.command("grafana")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_output_option
def export_grafana(file: str, output: Path | None) -> None:
    """A Grafana dashboard (JSON) of the monitors' metrics: live availability, live
    single points of failure, alerts, each entry component's margin, instances up, and
    the recorded gauges (CPU, memory, requests, latency p99, replication lag), etcd's
    quorum margin and restarts."""
    from spofless.monitor import grafana_dashboard

    _write(grafana_dashboard(topology_of(file)), output, as_yaml=False)
