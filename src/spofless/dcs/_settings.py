"""How spofless reaches the store: timings, with their invariants checked in one place,
and the client certificate it presents."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spofless.dcs._tls import EtcdTls


class DCSSettings(BaseModel):
    """How long spofless waits for the store and how it holds a leader lease.

    Invariants (rejected, never adjusted):

    - request_timeout <= retry_timeout: one member's attempt fits in one call's budget;
    - renew_interval + 2 x retry_timeout <= ttl - safety_margin: a holder whose renewal
      fails twice in a row still has time to renew once more before it must assume the
      lease is gone (the holder assumes so `ttl - safety_margin` after the last renewal it
      sent; the server keeps the lease at least `ttl` after receiving it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The leader lease's time to live on the server (etcd leases are whole seconds).
    # A dead holder is replaced within about ttl: short enough for a fast failover,
    # long enough to ride out one etcd leader election (~0.5-1 s here).
    ttl: Annotated[int, Field(ge=1, le=3600)] = 5
    # How often the holder renews its lease: well under the ttl so that one or two
    # lost renewals do not cost the leadership.
    renew_interval: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # One request to one member: a live member answers in milliseconds, a stopped one
    # never; this bounds how long a dead member costs before the next one is tried.
    request_timeout: Annotated[float, Field(gt=0, le=600)] = 0.5
    # One call across every member (failover included) before DCSUnavailable.
    retry_timeout: Annotated[float, Field(gt=0, le=600)] = 1.0
    # The holder gives up this long before the lease could expire on the server: the
    # time it needs to stop acting as leader (e.g. refuse writes) plus clock-rate drift.
    safety_margin: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # With TLS (https members): the CA that verifies the members and the certificate this
    # client presents (members started by spofless refuse a client without one).
    tls: EtcdTls | None = None

    @model_validator(mode="after")
    def _invariants(self) -> Self:
        if self.request_timeout > self.retry_timeout:
            raise ValueError(
                f"request_timeout ({self.request_timeout:g}s) must not exceed retry_timeout "
                f"({self.retry_timeout:g}s): raise retry_timeout or lower request_timeout"
            )
        budget = self.ttl - self.safety_margin
        need = self.renew_interval + 2 * self.retry_timeout
        if need > budget:
            raise ValueError(
                f"renew_interval + 2 x retry_timeout ({self.renew_interval:g} + 2 x "
                f"{self.retry_timeout:g} = {need:g}s) must be <= ttl - safety_margin "
                f"({self.ttl} - {self.safety_margin:g} = {budget:g}s): raise ttl to at least "
                f"{need + self.safety_margin:g}, or lower renew_interval, retry_timeout or "
                "safety_margin"
            )
        return self


# An agent holding a lease assumes it lost this long before etcd could expire it: time
# to stop what it guards (an immediate PostgreSQL stop takes milliseconds) plus clock-rate
# drift.
LEASE_SAFETY_MARGIN = 1.0


def lease_settings(ttl: int, loop_wait: float, tls: EtcdTls | None = None) -> DCSSettings:
    """An agent's lease timings from its component's `ttl` and `loop_wait` (and etcd's
    `tls`): renewed every loop_wait; one call to etcd may take what is left of the ttl,
    after the safety margin and one renewal interval, split over two tries.

    ValueError, saying what to change, when the ttl leaves no room for that."""
    retry = min(2.0, (ttl - LEASE_SAFETY_MARGIN - loop_wait) / 2)
    if retry < 0.1:
        raise ValueError(
            f"ttl {ttl}s is too short for loop_wait {loop_wait:g}s: the lease needs "
            f"loop_wait + 2 x 0.1s + {LEASE_SAFETY_MARGIN:g}s of margin; raise ttl or "
            "lower loop_wait"
        )
    return DCSSettings(
        ttl=ttl,
        renew_interval=loop_wait,
        retry_timeout=retry,
        request_timeout=min(0.5, retry),
        safety_margin=LEASE_SAFETY_MARGIN,
        tls=tls,
    )
