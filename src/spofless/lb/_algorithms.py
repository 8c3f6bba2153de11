"""Balancing algorithms: pure choices over candidates, no I/O.

Every algorithm answers `pick(candidates, key)` with one candidate or None.
Candidates are what the worker passes (its `Backend` objects); an algorithm
reads only `name`, `weight` (the effective weight: slow start applied, 0 means
"send nothing") and `active` (requests in flight). Which candidates are
eligible (up, enabled, not ejected) is decided by the caller, so fail-open is
the caller's business too.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol


class Candidate(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def active(self) -> int: ...


class Algorithm(Protocol):
    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate | None: ...


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's): with equal weights it is plain round robin."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate | None:
        best: Candidate | None = None
        best_current = 0.0
        total = 0.0
        current = self._current
        for c in candidates:
            w = c.weight
            if w <= 0:
                continue
            cur = current.get(c.name, 0.0) + w
            current[c.name] = cur
            total += w
            if best is None or cur > best_current:
                best, best_current = c, cur
        if best is None:
            return None
        current[best.name] = best_current - total
        return best


class LeastConnections:
    """Fewest requests in flight per unit of weight; ties go round robin."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate | None:
        n = len(candidates)
        self._turn += 1
        best: Candidate | None = None
        best_load = 0.0
        for i in range(n):
            c = candidates[(self._turn + i) % n]
            if c.weight <= 0:
                continue
            load = (c.active + 1) / c.weight
            if best is None or load < best_load:
                best, best_load = c, load
        return best


class TwoChoices:
    """Power of two random choices: the less loaded of two random candidates."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate | None:
        live = [c for c in candidates if c.weight > 0]
        if len(live) <= 1:
            return live[0] if live else None
        a, b = self._rng.sample(live, 2)
        return a if (a.active + 1) / a.weight <= (b.active + 1) / b.weight else b


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ConsistentHash:
    """Consistent hashing with bounded loads (Mirrokni et al., as in HAProxy's hash-balance-factor).

    Each candidate owns `replicas` points on a ring; a key goes to the first
    candidate clockwise whose in-flight count stays under `balance` times the
    average, so a hot key spills over instead of overloading one node, and a
    node that leaves moves only its own keys.
    """

    def __init__(self, replicas: int = 160, balance: float = 1.25) -> None:
        self.replicas = replicas
        self.balance = balance
        self._names: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []

    def _build(self, names: tuple[str, ...]) -> None:
        ring = sorted(
            (_hash(f"{name}#{i}".encode()), name) for name in names for i in range(self.replicas)
        )
        self._points = [p for p, _ in ring]
        self._owners = [n for _, n in ring]
        self._names = names

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate | None:
        live = {c.name: c for c in candidates if c.weight > 0}
        if not live:
            return None
        names = tuple(sorted(live))
        if names != self._names:
            self._build(names)
        total = sum(c.active for c in live.values())
        cap = self.balance * (total + 1) / len(live)
        start = bisect.bisect(self._points, _hash(key or b""))
        n = len(self._points)
        seen: set[str] = set()
        for i in range(n):
            name = self._owners[(start + i) % n]
            if name in seen:
                continue
            seen.add(name)
            c = live[name]
            if c.active + 1 <= cap:
                return c
            if len(seen) == len(live):
                break
        return live[self._owners[start % n]]


def make_algorithm(name: str, *, hash_balance: float = 1.25) -> Algorithm:
    """The algorithm called `name` in LbOptions.algorithm."""
    if name in ("round_robin", "weighted_round_robin"):
        return WeightedRoundRobin()
    if name == "least_connections":
        return LeastConnections()
    if name == "two_choices":
        return TwoChoices()
    if name == "hash":
        return ConsistentHash(balance=hash_balance)
    raise ValueError(f"unknown algorithm {name!r}")
