"""What the servers' round listings (``GET /rounds``, untrusted) tell a sync (protocol §10.3,
§10.4): which torrent holds each round, and which rounds are checkpoints (§4.4.4).

Nothing here is trusted: a sync built from a listing must end at the certified state root,
so a lying listing can only make it fail, never give wrong balances.
"""

from __future__ import annotations

from typing import Any

from scryp.core.pointer import PointerRecord
from scryp.errors import MalformedInput

Listing = dict[int, dict[str, Any]]


def infohashes(record: PointerRecord, listing: Listing, first: int) -> dict[int, bytes]:
    """The v1 infohash of every round first..R (R = ``record.round``): the certified pointer
    ``record``'s own for R, the listing's for the others, and, where the listing has none, the
    pointer's ``recent`` list read as rounds last-1, last-2, ... (a guess: ``recent`` skips
    rounds a server never seeded; a wrong one fails the fetch's round-name check)."""
    last = record.round
    found: dict[int, bytes] = {last: record.infohash}
    for number in range(first, last):
        entry = listing.get(number)
        if entry is None:
            continue
        try:
            found[number] = bytes.fromhex(str(entry["infohash"]))
        except (KeyError, ValueError):
            raise MalformedInput(f"server listing of round {number} is malformed") from None
    for offset, infohash in enumerate(record.recent, start=1):
        found.setdefault(last - offset, infohash)
    return {n: h for n, h in found.items() if first <= n <= last}


def listed_empty(listing: Listing, number: int) -> bool:
    """The listing says round ``number`` had no payments (so its ``changes`` and
    ``transactions`` are empty): a lie only makes the sync miss the certified root."""
    entry = listing.get(number)
    return entry is not None and entry.get("transactions") == 0


def newest_checkpoint(listing: Listing, last: int) -> int | None:
    """The newest round at or before ``last`` that the listing calls a checkpoint."""
    listed = [n for n, entry in listing.items() if n <= last and entry.get("checkpoint") is True]
    return max(listed, default=None)
