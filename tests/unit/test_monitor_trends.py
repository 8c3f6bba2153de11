"""Gauges over time and the trend projection: the series store's roll-ups and bound, the
growth fit, the time to capacity and the words `spofless trends` prints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spofless.monitor import (
    Retention,
    SeriesStore,
    component_trends,
    daily_peaks,
    project,
    render_trends,
)
from spofless.monitor._trends import MIN_DAYS, fit_growth
from spofless.topology import load_topology_text

DAY = 86400.0
TODAY = 1000 * DAY + 3600.0  # an hour into day 1000

SHOP = """\
name: shop
security: {tls: false}
components:
  lb: {kind: load_balancer, instances: 2, port: 8080, admin_port: 9100,
       routes: [{to: web}]}
  web: {kind: service, instances: 2, port: 8000}
  monitor: {kind: monitor, instances: 2, port: 9600}
entry: [lb]
"""


def growing(days: int, start: float, weekly: float, last_day: float = 999) -> dict[float, float]:
    """Daily peaks compounding `weekly` per week, ending on day `last_day`."""
    return {(last_day - i) * DAY: start * (1 + weekly) ** ((days - 1 - i) / 7) for i in range(days)}


def test_the_fit_finds_a_compound_weekly_growth() -> None:
    peaks = growing(28, 0.4, 0.04)
    slope, level = fit_growth(sorted(peaks.items()))
    assert math.exp(7 * slope) - 1 == pytest.approx(0.04)
    assert level == pytest.approx(max(peaks.values()))


def test_a_growing_load_is_projected_to_the_threshold() -> None:
    peaks = growing(28, 0.62 / 1.04 ** (27 / 7), 0.04)
    p = project(peaks, capacity=1.0, threshold=0.8, today=TODAY)
    assert p.state == "growing" and p.days == 28
    assert p.level == pytest.approx(0.62)
    assert p.growth == pytest.approx(0.04)
    # 0.62 * 1.04^w = 0.8
    assert p.weeks == pytest.approx(math.log(0.8 / 0.62) / math.log(1.04))
    assert 6 < (p.weeks or 0) < 7


def test_one_day_of_a_drill_moves_the_fit_little() -> None:
    peaks = growing(28, 0.3, 0.02)
    peaks[990 * DAY] = 5.0  # a load test: ten times the usual peak
    p = project(peaks, capacity=1.0, threshold=0.8, today=TODAY)
    assert p.growth == pytest.approx(0.02, abs=0.005)


def test_too_little_history_says_so() -> None:
    p = project(growing(MIN_DAYS - 1, 0.5, 0.1), 1.0, 0.8, TODAY)
    assert (p.state, p.days, p.level, p.weeks) == ("too little history", MIN_DAYS - 1, None, None)


def test_the_day_under_way_and_days_before_the_window_are_left_out() -> None:
    peaks = growing(6, 0.5, 0.1)
    peaks[1000 * DAY] = 0.9  # today: not over yet
    peaks[900 * DAY] = 0.1  # long ago
    assert project(peaks, 1.0, 0.8, TODAY).state == "too little history"


def test_flat_shrinking_idle_and_over() -> None:
    assert project(growing(14, 0.5, 0.0), 1.0, 0.8, TODAY).state == "flat"
    assert project(growing(14, 0.5, -0.05), 1.0, 0.8, TODAY).state == "shrinking"
    assert project(growing(14, 0.0, 0.1), 1.0, 0.8, TODAY).state == "idle"
    over = project(growing(14, 0.85, 0.01), 1.0, 0.8, TODAY)
    assert over.state == "over"


def test_no_capacity_no_projection_and_a_far_one_is_not_promised() -> None:
    p = project(growing(14, 100.0, 0.05), None, 0.8, TODAY)
    assert (p.state, p.weeks) == ("growing", None)
    slow = project(growing(14, 0.1, 0.006), 1.0, 0.8, TODAY)
    assert slow.state == "growing" and slow.weeks is None  # 8x at 0.6 %/week: > 2 years


def test_component_trends_take_the_busiest_instance_and_say_it() -> None:
    topology = load_topology_text(SHOP)
    peaks = {
        ("lb/0", "cpu"): growing(28, 0.62 / 1.04 ** (27 / 7), 0.04),
        ("lb/1", "cpu"): growing(28, 0.01, 0.0),  # the VIP's standby
        ("web/0", "requests"): growing(3, 100.0, 0.1),
        ("gone/0", "cpu"): growing(28, 0.5, 0.1),  # not in the file any more
    }
    trends = component_trends(
        peaks, topology, cores=4.0, memory=8 << 30, max_lag=None, threshold=0.8, now=TODAY
    )
    assert [(t.component, t.gauge) for t in trends] == [("lb", "cpu"), ("web", "requests")]
    assert trends[0].capacity == 1.0  # one worker: one core
    lines = render_trends(trends, 0.8)
    assert lines[0].split()[:2] == ["lb", "CPU"]
    assert lines[0].endswith("62% of one core at the daily peak, growing 4.0%/week: 80% in 6 weeks")
    assert "too little history: 3 daily peaks recorded, a trend needs 7" in lines[1]


def test_the_store_rolls_up_and_stays_bounded(tmp_path: Path) -> None:
    keep = Retention(raw=600.0, minutes=2 * 3600.0, hours=2 * DAY, days=30 * DAY)
    store = SeriesStore(tmp_path / "m.sqlite", keep)
    t0 = 500 * DAY
    # Three days at one sample every 30 s: a daily cycle peaking at noon.
    for i in range(3 * 2880):
        at = t0 + i * 30.0
        hour = (at % DAY) / 3600
        load = 0.2 + 0.4 * max(0.0, 1 - abs(hour - 12) / 6) + 0.05 * (at - t0) / DAY
        store.add(at, {("lb/0", "cpu"): load, ("lb/0", "memory"): 1e6})
        if i % 2 == 0:
            store.compact(at)
    rows = store.rows()
    assert rows["raw"] <= (600 / 30 + 2) * 2  # two series, plus the minute under way
    assert rows["minutes"] <= (2 * 3600 / 60 + 60) * 2
    assert rows["hours"] <= (2 * 24 + 1) * 2
    assert rows["days"] == 2 * 2  # days 500 and 501 over; 502 is under way
    store.close()
    peaks = daily_peaks([tmp_path / "m.sqlite"])
    days = peaks[("lb/0", "cpu")]
    # Each day with its noon peak (a 1-minute average, so a little under the sample at
    # noon): 500 and 501 from their day rows, 502 (under way) from its hours and minutes.
    assert sorted(days) == [500 * DAY, 501 * DAY, 502 * DAY]
    assert days[501 * DAY] == pytest.approx(0.6 + 0.05 * 1.5, abs=0.01)
    assert days[500 * DAY] < days[501 * DAY] < days[502 * DAY]


def test_the_store_merges_monitors_and_compacting_twice_changes_nothing(
    tmp_path: Path,
) -> None:
    a = SeriesStore(tmp_path / "a.sqlite", Retention())
    b = SeriesStore(tmp_path / "b.sqlite", Retention())
    for i in range(120):
        at = 10 * DAY + i * 30.0
        a.add(at, {("web/0", "cpu"): 0.5})
        b.add(at, {("web/0", "cpu"): 0.7 if i == 60 else 0.1})
    for store in (a, b):
        store.compact(10 * DAY + 7200)
        before = store.rows()
        store.compact(10 * DAY + 7200)
        assert store.rows() == before
        store.close()
    peaks = daily_peaks([tmp_path / "a.sqlite", tmp_path / "b.sqlite"])
    # b's one high sample shares its minute with another: its minute averages 0.4.
    assert peaks[("web/0", "cpu")] == {10 * DAY: pytest.approx(0.5)}


def test_the_trends_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`spofless trends` over two monitors' databases: the projection, too little history,
    and clear messages when there is nothing (exit 2 without any monitor history)."""
    import json
    import time

    from click.testing import CliRunner

    from spofless.cli import main
    from spofless.monitor import history_path

    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    state = tmp_path / "state"
    runner = CliRunner()
    none = runner.invoke(main, ["trends", str(path), "--state-dir", str(state)])
    assert none.exit_code == 2 and "no monitor history under" in none.output

    stores = [SeriesStore(history_path(state, "monitor", i), Retention()) for i in (0, 1)]
    stores[0].set_meta("cores", 4.0)
    empty = runner.invoke(main, ["trends", str(path), "--state-dir", str(state)])
    assert empty.exit_code == 0 and "no gauges recorded yet" in empty.output

    now = time.time()
    today = math.floor(now / DAY) * DAY
    # lb/0's daily peak grows 4 %/week for 4 weeks, from monitor/0 on even days and
    # monitor/1 on odd ones (each was down half the time); web/0 has 3 days.
    for i in range(28):
        day = today - (28 - i) * DAY
        peak = 0.62 * 1.04 ** ((i - 27) / 7)
        store = stores[i % 2]
        for minute in range(3):  # a busy noon minute, and a quieter one
            at = day + 12 * 3600 + minute * 60
            store.add(at, {("lb/0", "cpu"): peak if minute == 1 else peak / 2})
            if i >= 25:
                store.add(at, {("web/0", "requests"): 10.0})
        store.compact(day + 2 * DAY)
    for store in stores:
        store.close()

    out = runner.invoke(main, ["trends", str(path), "--state-dir", str(state)])
    assert out.exit_code == 0, out.output
    lb, web = out.output.splitlines()
    assert lb.split()[:2] == ["lb", "CPU"]
    assert lb.endswith("62% of one core at the daily peak, growing 4.0%/week: 80% in 6 weeks")
    assert "too little history: 3 daily peaks recorded" in web

    as_json = runner.invoke(
        main, ["trends", str(path), "--state-dir", str(state), "--json", "--threshold", "70"]
    )
    docs = [json.loads(line) for line in as_json.output.splitlines()]
    assert docs[0]["component"] == "lb" and docs[0]["state"] == "growing"
    assert docs[0]["weeks_to_threshold"] == pytest.approx(
        math.log(0.7 / 0.62) / math.log(1.04), rel=0.01
    )
    bad = runner.invoke(main, ["trends", str(path), "--threshold", "0"])
    assert bad.exit_code == 2 and "--threshold" in bad.output
