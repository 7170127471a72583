"""A server's upload budget per round torrent (protocol §8.9.1). Pure: the time and the byte
counts are passed in.

Owns: the decision, for each torrent a server seeds, whether it may upload at full speed or
only trickle. Why: a seed with free upload slots stays busy for as long as anyone still wants
a piece, so a crowd arriving over ten seconds took 4-7 snapshots from each server although
the clients held every piece among themselves after the first copy (docs/BENCHMARKS.md,
crowd). The budget makes the swarm, not the servers, carry a crowd; the trickle keeps a piece
that nobody else has reachable.

Invariant: over any ``window_s``, a torrent uploads at full speed only while it has uploaded
less than ``copies`` times its size plus ``floor_bytes`` (``budget_bytes``); past that, at
``trickle_bytes_per_s`` until what the last ``window_s`` uploaded falls under the budget. A
torrent seen for the first time, or whose count went back (it was added again), starts a new
history in which all it has uploaded counts as spent at that moment. Memory: one history
per torrent of the last ``limits`` call, each at most one sample per call within the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

UNLIMITED = 0  # libtorrent's "no limit"


@dataclass(frozen=True, slots=True)
class SeedBudget:
    copies: float = 1.0
    # So that a small torrent (a round's transactions) is never held back by a few copies.
    floor_bytes: int = 4 << 20
    window_s: float = 30.0
    trickle_bytes_per_s: int = 250_000

    def __post_init__(self) -> None:
        # A trickle of 0 would be libtorrent's "no limit": the opposite of what it says.
        if self.trickle_bytes_per_s < 1 or self.window_s <= 0 or self.copies < 0:
            raise ValueError("a seed budget needs trickle >= 1 B/s, window > 0, copies >= 0")
        if self.floor_bytes < 0:
            raise ValueError("a seed budget's floor is not negative")

    def budget_bytes(self, size_bytes: int) -> int:
        return int(self.copies * size_bytes) + self.floor_bytes


@dataclass(frozen=True, slots=True)
class Seeded:
    """One torrent as the seed sees it now."""

    infohash: bytes
    size_bytes: int
    uploaded_bytes: int  # payload uploaded since the torrent was added


class SeedBudgets:
    """The upload histories of the torrents a server seeds, and the limits they lead to."""

    def __init__(self, budget: SeedBudget) -> None:
        self.budget = budget
        self._history: dict[bytes, deque[tuple[float, int]]] = {}

    def limits(self, torrents: Iterable[Seeded], now_s: float) -> dict[bytes, int]:
        """Each torrent's upload limit in bytes/s now (``UNLIMITED``: none); histories of
        torrents no longer seeded are dropped."""
        seen: dict[bytes, deque[tuple[float, int]]] = {}
        limits: dict[bytes, int] = {}
        for torrent in torrents:
            samples = self._history.get(torrent.infohash)
            if samples is None or samples[-1][1] > torrent.uploaded_bytes:
                # First seen (or added again: a new count): what it uploaded so far counts as
                # spent now, so a budget started late (a server's restart) still holds.
                samples = deque([(now_s, 0)])
            samples.append((now_s, torrent.uploaded_bytes))
            # Keep one sample at or before the window's start, so the spend covers it all.
            while len(samples) > 1 and samples[1][0] <= now_s - self.budget.window_s:
                samples.popleft()
            seen[torrent.infohash] = samples
            spent = torrent.uploaded_bytes - samples[0][1]
            over = spent >= self.budget.budget_bytes(torrent.size_bytes)
            limits[torrent.infohash] = self.budget.trickle_bytes_per_s if over else UNLIMITED
        self._history = seen
        return limits
