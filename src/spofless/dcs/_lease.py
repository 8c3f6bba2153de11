"""What the holder of a leader lease may assume, from the times its renewals were sent.

Pure: no clock of its own, no I/O. The server keeps a lease at least `ttl`
seconds after a renewal *reaches* it, which is after the holder *sent* it; so
counting from the send time is safe whatever the network delay. The holder
assumes the lease gone `ttl - safety_margin` after the last renewal sent that
succeeded, strictly before the server can let it expire.
"""

from __future__ import annotations

from spofless.dcs._settings import DCSSettings

# After a failed renewal, try again this soon (or at the renew interval if shorter):
# the failed call already waited up to retry_timeout, so this only stops a hot loop
# when failures are instant (connection refused everywhere).
RETRY_DELAY = 0.1


class LeaderLease:
    """The holder's view of one lease: held until `valid_until`, renewed, or ended."""

    def __init__(self, settings: DCSSettings, granted_sent_at: float, granted_ttl: int) -> None:
        self.settings = settings
        self._last_sent = granted_sent_at
        self._valid_until = self._deadline(granted_sent_at, granted_ttl)
        self._failed_at: float | None = None
        self._ended: str | None = None

    def _deadline(self, sent_at: float, ttl: int) -> float:
        # A store may raise a short ttl, never cut it; use the shorter, to be safe.
        return sent_at + min(ttl, self.settings.ttl) - self.settings.safety_margin

    @property
    def valid_until(self) -> float:
        """The holder must have stopped acting as leader by this time unless renewed."""
        return self._valid_until

    @property
    def ended(self) -> str | None:
        """Why the lease was given up or lost, or None while it may still be held."""
        return self._ended

    def held(self, now: float) -> bool:
        return self._ended is None and now < self._valid_until

    def lost_reason(self, now: float) -> str | None:
        """None while held, else why not."""
        if self._ended is not None:
            return self._ended
        if now >= self._valid_until:
            return (
                f"no successful renewal for {now - self._last_sent:.2f}s "
                f"(ttl {self.settings.ttl}s - safety margin {self.settings.safety_margin:g}s)"
            )
        return None

    def renewed(self, sent_at: float, ttl: int) -> None:
        """A renewal sent at sent_at succeeded and the store says the lease has ttl."""
        if self._ended is not None:
            return
        if ttl <= 0:
            self.end("the lease expired on the store")
            return
        self._failed_at = None
        self._last_sent = max(self._last_sent, sent_at)
        self._valid_until = max(self._valid_until, self._deadline(sent_at, ttl))

    def renewal_failed(self, now: float) -> None:
        self._failed_at = now

    def end(self, reason: str) -> None:
        """Give up the lease (resigned, lost, key taken). Final."""
        if self._ended is None:
            self._ended = reason

    def next_renewal_at(self) -> float:
        """When to send the next renewal."""
        if self._failed_at is not None:
            return self._failed_at + min(RETRY_DELAY, self.settings.renew_interval)
        return self._last_sent + self.settings.renew_interval

    def attempt_timeout(self, now: float) -> float:
        """How long a renewal sent now may take: no longer than the lease stays valid."""
        return max(0.0, min(self.settings.retry_timeout, self._valid_until - now))
