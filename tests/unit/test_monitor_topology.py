"""`kind: monitor` in the topology: its fields, its etcd, and `check`'s alerting path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from spofless.cli import main
from spofless.topology import MonitorComponent, TopologyError, load_topology_text

TOPOLOGY = """\
name: shop
hosts:
  h1: {{}}
  h2: {{}}
  h3: {{}}
components:
  web: {{kind: service, instances: [h1, h2, h3], needs: [etcd], port: 18080}}
  etcd: {{kind: etcd, instances: [h1, h2, h3], min_up: majority, port: 12379, peer_port: 12479}}
  monitor:
    kind: monitor
    instances: {monitors}
    port: 19600
    receivers:
      - {receiver}
entry: [web]
"""
WEBHOOK = '{type: webhook, url: "http://127.0.0.1:9/hook"}'


def text(monitors: str = "[h1, h2]", receiver: str = WEBHOOK) -> str:
    return TOPOLOGY.format(monitors=monitors, receiver=receiver)


def test_a_monitor_depends_on_the_etcd_it_claims_in() -> None:
    t = load_topology_text(text())
    comp = t.components["monitor"]
    assert isinstance(comp, MonitorComponent)
    assert t.dependencies("monitor") == ["etcd"]
    # Not on the serving path: no "no entry depends on it" warning.
    assert not [w for w in t.warnings if "monitor" in w.field]


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ('{type: webhook, url: "http://x/", token: s3cret}', "token_file or token_env"),
        (
            "{type: email, smtp: 'h:25', from: a@b, to: [c@d], password: s3cret}",
            "password_file or password_env",
        ),
        ('{type: webhook, url: "http://x/", timeout: 20, retries: 2}', "claim_ttl"),
        ("{type: command, command: ''}", "the command is empty"),
    ],
)
def test_bad_monitor_settings_name_the_line(receiver: str, message: str) -> None:
    with pytest.raises(TopologyError) as exc:
        load_topology_text(text(receiver=receiver), source="shop.yaml")
    assert message in str(exc.value)
    assert "shop.yaml:" in str(exc.value)
    assert "s3cret" not in str(exc.value)


def test_check_reports_a_single_monitor_as_a_spof_of_the_alerting_path(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(text("[h1]"))
    result = CliRunner().invoke(main, ["check", str(one)])
    assert result.exit_code == 1, result.output
    assert "alerting path" in result.output
    assert "instance:monitor/0  the only instance of monitor" in result.output

    two = tmp_path / "two.yaml"
    two.write_text(text("[h1, h2]"))
    result = CliRunner().invoke(main, ["check", str(two)])
    assert result.exit_code == 0, result.output
    assert "alerting path (monitors and their etcd): ✓" in result.output


def test_monitor_and_events_commands_reject_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(text())
    runner = CliRunner()
    result = runner.invoke(main, ["monitor", str(path), "--component", "web", "--instance", "0"])
    assert result.exit_code == 2
    assert "no monitor component 'web'; web is kind service" in result.output
    result = runner.invoke(
        main, ["monitor", str(path), "--component", "monitor", "--instance", "5"]
    )
    assert result.exit_code == 2 and "monitor has instances 0..1, not 5" in result.output
    result = runner.invoke(main, ["events", str(path), "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no monitor history under" in result.output
    assert "Traceback" not in result.output


def test_events_lists_what_monitors_recorded(tmp_path: Path) -> None:
    from spofless.monitor import Event, History, history_path

    path = tmp_path / "shop.yaml"
    path.write_text(text())
    for i, at in ((0, 2.0), (1, 1.0)):
        h = History(history_path(tmp_path / "state", "monitor", i), max_events=100)
        h.record(Event(at, f"monitor/{i}", "instance_down", "etcd/1", "warning", f"seen by {i}"))
        h.close()
    result = CliRunner().invoke(
        main, ["events", str(path), "--state-dir", str(tmp_path / "state"), "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [e["message"] for e in lines] == ["seen by 1", "seen by 0"]


def test_history_is_bounded(tmp_path: Path) -> None:
    from spofless.monitor import Event, History

    h = History(tmp_path / "h.sqlite", max_events=100)
    for i in range(450):
        h.record(Event(float(i), "m/0", "k", "s", "info", str(i)))
    h.trim()
    assert h.count() == 100
    h.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("keep_raw: 60", "keep_raw (60s) must be at least 2 minutes + gauge_interval (130s)"),
        ("keep_minutes: 1h", "keep_minutes (3600s) must be at least 2h"),
        ("keep_hours: 1d", "keep_hours (86400s) must be at least 2d"),
        ("keep_days: 7d", "keep_days (604800s) must be at least 28d"),
        ("gauge_interval: 0.5", "gauge_interval: must be at least 1"),
        ("crash_restarts: 1", "crash_restarts: must be at least 2"),
    ],
)
def test_history_settings_that_cannot_hold_name_the_line(fields: str, message: str) -> None:
    bad = text().replace("    port: 19600\n", f"    port: 19600\n    {fields}\n")
    with pytest.raises(TopologyError, match=r"<memory>:\d+:\d+: components\.monitor") as info:
        load_topology_text(bad)
    assert message in str(info.value)


def test_history_settings_take_durations() -> None:
    extra = "    gauge_interval: 30s\n    keep_raw: 2h\n    keep_days: 52w\n    crash_window: 5m\n"
    comp = load_topology_text(text().replace("    port: 19600\n", "    port: 19600\n" + extra))
    spec = comp.components["monitor"]
    assert isinstance(spec, MonitorComponent)
    assert (spec.gauge_interval, spec.keep_raw, spec.keep_days, spec.crash_window) == (
        30.0,
        7200.0,
        52 * 7 * 86400.0,
        300.0,
    )
