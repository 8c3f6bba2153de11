"""Response rate limiting over UDP: a token bucket per client netblock, with slip.

UDP source addresses can be forged, so a flood "from" a victim's address must
not turn the server into a weapon against it. As BIND's and Knot's response
rate limiting do, every client netblock (/24 for IPv4, /56 for IPv6 by default)
has a bucket of `burst` tokens refilled at `responses_per_second`; a query
takes one token. A query that finds the bucket empty is dropped, except every
`slip`-th one, which gets a tiny truncated answer (TC=1, no records): a real
client then retries over TCP, where the three-way handshake proves its address
and no limit applies, while a victim receives no more bytes than were forged.

Clock and memory: the caller passes the time, so the limiter is pure and its
tests need no sleeping. At most `max_blocks` netblocks are tracked; beyond
that, buckets that have refilled (equal to a new one) are forgotten first, then
the oldest.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from spofless.topology import DnsRateLimit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Verdict(enum.Enum):
    ANSWER = "answer"
    DROP = "drop"
    SLIP = "slip"  # answer with TC=1 and nothing else


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    limited: int = 0  # queries refused since the bucket last had a token


class ResponseRateLimiter:
    """Decides, per query, whether its source netblock may get an answer now."""

    def __init__(self, spec: DnsRateLimit, max_blocks: int = 100_000) -> None:
        self.spec = spec
        self.max_blocks = max_blocks
        self._buckets: dict[tuple[int, int], _Bucket] = {}
        self.dropped = 0
        self.slipped = 0

    @property
    def enabled(self) -> bool:
        return self.spec.responses_per_second > 0

    def netblock(self, address: IPAddress) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The netblock `address` is counted in."""
        prefix = self.spec.ipv4_prefix if address.version == 4 else self.spec.ipv6_prefix
        return ipaddress.ip_network((address, prefix), strict=False)

    def check(self, address: IPAddress, now: float) -> tuple[Verdict, bool]:
        """The verdict for one query from `address` at time `now` (seconds, monotonic),
        and whether it is the first limited query of a run (worth one log line)."""
        if not self.enabled:
            return Verdict.ANSWER, False
        prefix = self.spec.ipv4_prefix if address.version == 4 else self.spec.ipv6_prefix
        shift = address.max_prefixlen - prefix
        key = (address.version, int(address) >> shift)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_blocks:
                self._shrink(now)
            bucket = self._buckets[key] = _Bucket(float(self.spec.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(
                float(self.spec.burst), bucket.tokens + elapsed * self.spec.responses_per_second
            )
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.limited = 0
            return Verdict.ANSWER, False
        bucket.limited += 1
        first = bucket.limited == 1
        if self.spec.slip and bucket.limited % self.spec.slip == 0:
            self.slipped += 1
            return Verdict.SLIP, first
        self.dropped += 1
        return Verdict.DROP, first

    def _shrink(self, now: float) -> None:
        """Forget full buckets, then the oldest, down to 90% of `max_blocks`."""
        rate, burst = self.spec.responses_per_second, float(self.spec.burst)
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= burst]
        for key in full:
            del self._buckets[key]
        excess = len(self._buckets) - int(self.max_blocks * 0.9)
        for key in list(self._buckets)[: max(0, excess)]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
