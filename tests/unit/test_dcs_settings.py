"""DCSSettings rejects inconsistent timings with a message saying how to fix them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spofless.dcs import DCSSettings


def test_defaults_are_consistent() -> None:
    s = DCSSettings()
    assert s.renew_interval + 2 * s.retry_timeout <= s.ttl - s.safety_margin


def test_renewals_must_fit_in_the_lease() -> None:
    with pytest.raises(ValidationError, match=r"raise ttl to at least 6"):
        DCSSettings(ttl=3, renew_interval=1, retry_timeout=2, request_timeout=1, safety_margin=1)


def test_request_timeout_fits_in_retry_timeout() -> None:
    with pytest.raises(ValidationError, match="must not exceed retry_timeout"):
        DCSSettings(request_timeout=2, retry_timeout=1)


def test_boundary_is_accepted_and_settings_are_frozen() -> None:
    s = DCSSettings(
        ttl=2, renew_interval=0.5, retry_timeout=0.5, request_timeout=0.5, safety_margin=0.5
    )
    with pytest.raises(ValidationError):
        s.ttl = 10  # type: ignore[misc]


def test_unknown_and_nonpositive_fields_rejected() -> None:
    with pytest.raises(ValidationError):
        DCSSettings(ttl=0)
    with pytest.raises(ValidationError):
        DCSSettings.model_validate({"tll": 5})
