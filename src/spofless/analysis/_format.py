"""Numbers as people read them: availability as a percentage and nines, downtime per year."""

from __future__ import annotations

import math

from spofless.analysis._report import MINUTES_PER_YEAR


def percent(availability: float) -> str:
    """99.99871%: enough digits to show the first two significant digits of the downtime."""
    down = 1.0 - availability
    if down <= 0:
        return "100%"
    digits = min(12, max(2, math.ceil(-math.log10(down)) - 1))
    return f"{availability * 100:.{digits}f}%"


def nines(unavailability: float) -> str:
    if unavailability <= 0:
        return "∞ nines"
    return f"{-math.log10(unavailability):.1f} nines"


def downtime(unavailability: float) -> str:
    """Expected downtime per year, in the largest unit that reads well."""
    minutes = unavailability * MINUTES_PER_YEAR
    if minutes >= 60 * 24:
        return f"{minutes / 60 / 24:.1f} days/year"
    if minutes >= 60:
        return f"{minutes / 60:.1f} h/year"
    if minutes >= 1:
        return f"{minutes:.1f} min/year"
    return f"{minutes * 60:.2g} s/year"


def gain(before: float, after: float) -> str:
    """What a change does to the expected downtime: 'saves 52.3 min/year'."""
    delta = after - before
    verb = "saves" if delta >= 0 else "adds"
    return f"{verb} {downtime(abs(delta))}"
