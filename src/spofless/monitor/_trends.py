"""Growth of load per component and when it reaches capacity: `spofless trends`. Pure.

    project(peaks, capacity, threshold, today) -> Projection
    component_trends(peaks, topology, capacities, threshold, now) -> [Trend]
    render(trends, threshold) -> [str]

What is fitted: each component's daily peak (per UTC day, the busiest of its
instances at its highest 1-minute average, see `_series`), over the last
WINDOW_DAYS full days; the day under way is left out (its peak may be still to
come). Load grows by a share per week more than by a fixed amount, so the fit
is a straight line through log(peak) against the day, and the growth is
exp(7 x slope) - 1 per week, compounded. The line is Theil-Sen's (the median of
the slopes between every two days), not least squares: a day with a drill or a
load test among 28 moves it little.

    fewer than MIN_DAYS daily peaks     "too little history": no figure is made up
    peaks at 0 (no load recorded)       idle
    |growth| under FLAT per week        flat: no projection
    shrinking                           no projection
    the fitted level over the target    over the target now
    growing                             weeks until the fitted line reaches
                                        threshold x capacity (not beyond HORIZON_WEEKS)

The level reported is the fitted line's value at the last full day (what the
trend says the peak is now), and the projection starts from it; the time it
gives is rounded down (6.5 weeks is "6 weeks": a warning is never late).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from spofless.topology import LoadBalancerComponent, Topology

MIN_DAYS = 7
WINDOW_DAYS = 28
FLAT = 0.005  # 0.5 % per week
HORIZON_WEEKS = 104.0
DAY = 86400.0

State = Literal["too little history", "idle", "flat", "shrinking", "growing", "over"]


@dataclass(frozen=True, slots=True)
class Projection:
    state: State
    days: int  # daily peaks the fit used
    level: float | None = None  # the fitted peak at the last full day
    growth: float | None = None  # per week: 0.04 is 4 %/week
    weeks: float | None = None  # until threshold x capacity; None: not within the horizon


def fit_growth(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Theil-Sen line through (day, log value): (slope per day, value at the last day)."""
    xs = [d / DAY for d, _ in points]
    ys = [math.log(v) for _, v in points]
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    ]
    slope = statistics.median(slopes)
    intercept = statistics.median(y - slope * x for x, y in zip(xs, ys, strict=True))
    return slope, math.exp(intercept + slope * max(xs))


def project(
    peaks: Mapping[float, float], capacity: float | None, threshold: float, today: float
) -> Projection:
    """The trend of daily `peaks` ({day start: peak}) before the day `today` falls in."""
    start = math.floor(today / DAY) * DAY
    window = sorted((d, v) for d, v in peaks.items() if start - WINDOW_DAYS * DAY <= d < start)
    if len(window) < MIN_DAYS:
        return Projection("too little history", len(window))
    top = max(v for _, v in window)
    if top <= 0:
        return Projection("idle", len(window), level=0.0)
    # A zero peak (no load that day) would be log(0): floored at 1 % of the highest.
    floor = top / 100
    slope, level = fit_growth([(d, max(v, floor)) for d, v in window])
    growth = math.exp(7 * slope) - 1
    if capacity is not None and level >= threshold * capacity:
        return Projection("over", len(window), level, growth)
    if abs(growth) < FLAT:
        return Projection("flat", len(window), level, growth)
    if growth < 0:
        return Projection("shrinking", len(window), level, growth)
    weeks = None
    if capacity is not None:
        weeks = math.log(threshold * capacity / level) / (7 * slope)
        weeks = weeks if weeks <= HORIZON_WEEKS else None
    return Projection("growing", len(window), level, growth, weeks)


@dataclass(frozen=True, slots=True)
class Trend:
    component: str
    gauge: str
    capacity: float | None
    projection: Projection


def component_trends(
    peaks: Mapping[tuple[str, str], Mapping[float, float]],
    topology: Topology,
    *,
    cores: float | None,
    memory: float | None,
    max_lag: float | None,
    threshold: float,
    now: float,
) -> list[Trend]:
    """One trend per component and gauge: each day, the busiest instance's peak."""
    merged: dict[tuple[str, str], dict[float, float]] = {}
    for (inst, gauge), days in peaks.items():
        comp = inst.rpartition("/")[0]
        if comp not in topology.components:
            continue  # an instance of an older version of the file
        into = merged.setdefault((comp, gauge), {})
        for day, v in days.items():
            into[day] = max(v, into.get(day, v))
    out = []
    for (comp, gauge), days in sorted(merged.items()):
        capacity = _capacity(topology, comp, gauge, cores, memory, max_lag)
        out.append(Trend(comp, gauge, capacity, project(days, capacity, threshold, now)))
    return out


def _capacity(
    topology: Topology,
    component: str,
    gauge: str,
    cores: float | None,
    memory: float | None,
    max_lag: float | None,
) -> float | None:
    if gauge == "cpu":
        spec = topology.components[component]
        if isinstance(spec, LoadBalancerComponent):
            # Each worker is one single-threaded process: it can use one core.
            return float(min(spec.workers, cores)) if cores else float(spec.workers)
        return cores
    if gauge == "memory":
        return memory
    if gauge == "lag":
        return max_lag
    return None  # requests, latency: growth only (their capacity is not known)


# -- text ---------------------------------------------------------------------------

_WHAT = {
    "cpu": "CPU",
    "memory": "memory",
    "requests": "requests",
    "latency_p50": "latency p50",
    "latency_p99": "latency p99",
    "lag": "replication lag",
}


def render(trends: list[Trend], threshold: float) -> list[str]:
    """One line per component and gauge, as `spofless trends` prints them."""
    if not trends:
        return []
    width = max(len(t.component) for t in trends)
    lines = []
    for t in trends:
        what = _WHAT.get(t.gauge, t.gauge)
        lines.append(f"{t.component:<{width}}  {what:<16} {describe(t, threshold)}")
    return lines


def describe(t: Trend, threshold: float) -> str:
    p = t.projection
    if p.state == "too little history":
        return (
            f"too little history: {p.days} daily peak{'s' if p.days != 1 else ''} "
            f"recorded, a trend needs {MIN_DAYS} (a week of the monitor running)"
        )
    if p.level is None or p.state == "idle":
        return f"idle (no load recorded at the daily peaks of the last {p.days} days)"
    text = f"{_amount(t.gauge, p.level, t.capacity)} at the daily peak"
    assert p.growth is not None
    if p.state == "flat":
        return f"{text}, flat ({_pct(p.growth)}/week)"
    if p.state == "shrinking":
        return f"{text}, shrinking {_pct(-p.growth)}/week"
    target = f"{threshold * 100:.0f}%" + ("" if t.gauge != "lag" else " of the lag bound")
    if p.state == "over":
        return f"{text}: over {target} now (growing {_pct(p.growth)}/week)"
    text = f"{text}, growing {_pct(p.growth)}/week"
    if t.capacity is None:
        return text
    if p.weeks is None:
        return f"{text}: not {target} within {HORIZON_WEEKS / 52:.0f} years"
    return f"{text}: {target} in {_when(p.weeks)}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _when(weeks: float) -> str:
    """Rounded down: a capacity warning is never later than the line says."""
    if weeks < 2:
        days = max(1, math.floor(weeks * 7))
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{math.floor(weeks)} weeks"


def _amount(gauge: str, value: float, capacity: float | None) -> str:
    if gauge == "cpu":
        if capacity == 1:
            return f"{value * 100:.0f}% of one core"
        cap = f" of {capacity:g} cores ({value / capacity * 100:.0f}%)" if capacity else ""
        return f"{value:.2f} cores{cap}"
    if gauge == "memory":
        if not capacity:
            return _bytes(value)
        return f"{_bytes(value)} ({value / capacity * 100:.0f}% of the host's {_bytes(capacity)})"
    if gauge == "lag":
        if not capacity:
            return _bytes(value)
        return f"{_bytes(value)} ({value / capacity * 100:.0f}% of the bound)"
    if gauge == "requests":
        return f"{value:,.1f} requests/s"
    if gauge.startswith("latency"):
        return f"{value * 1000:.1f} ms"
    return f"{value:g}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
