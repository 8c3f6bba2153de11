"""A memo of answers in front of the pure answer function, valid for one health view.

Parsing and rendering with dnspython costs tens of microseconds a query; most
queries to a health-checked zone are the same few questions. Two queries whose
bytes agree after the 2-byte id, over the same transport, from the same
source region, get the same answer (the EDNS options, client subnet included,
are in those bytes), so the answer is rendered once and sent again with the
new id. The owner clears the cache whenever the health view changes.

An answer's records are shuffled when rendered; up to `variants` renderings
are kept per question and picked by query id, so clients still spread over
all addresses. At most `max_entries` questions are kept; when full, the cache
starts afresh (random names from a flood cannot grow it).
"""

from __future__ import annotations

from spofless.dns._answer import (
    TCP_LIMIT,
    HealthView,
    Zone,
    client_region,
    formerr,
    is_query,
    parse_query,
    render,
    respond,
    udp_limit,
)
from spofless.dns._settings import IPAddress


class AnswerCache:
    """`answer(wire, source, view)` returns what `answer_wire` would, from memory when it can."""

    def __init__(self, zone: Zone, *, max_entries: int = 10_000, variants: int = 4) -> None:
        self.zone = zone
        self.max_entries = max_entries
        self.variants = variants
        self._entries: dict[tuple[bytes, bool, str | None], list[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget every answer (the health view changed)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def answer(
        self, wire: bytes, source: IPAddress | None, view: HealthView, *, tcp: bool = False
    ) -> bytes | None:
        if not is_query(wire):
            return None
        region = client_region(self.zone, source, None)[0] if self.zone.networks else None
        key = (wire[2:], tcp, region)
        renderings = self._entries.get(key)
        if renderings is None:
            self.misses += 1
            query = parse_query(wire)
            if query is None:
                return formerr(wire)
            response = respond(query, source, view, self.zone)
            limit = TCP_LIMIT if tcp else udp_limit(query, self.zone)
            first = render(response, limit)
            records = max((len(rrset) for rrset in response.answer), default=1)
            renderings = [first[2:]]
            renderings += [
                render(response, limit)[2:] for _ in range(min(records, self.variants) - 1)
            ]
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = renderings
            return first
        self.hits += 1
        return wire[:2] + renderings[int.from_bytes(wire[:2], "big") % len(renderings)]
