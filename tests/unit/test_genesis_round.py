"""Round 0's files, written by every server at its first start (protocol §4.4.4, §8.1)."""

from __future__ import annotations

import hashlib

from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger
from scryp.server.rounds import genesis_contents, round_contents


def test_genesis_contents_are_the_round_a_fresh_ledger_seals() -> None:
    """Built without a ledger (seconds at 10M accounts), byte for byte the files a ledger
    fresh from the genesis gives: every server's round 0 torrent must be the same."""
    ids = sorted(hashlib.sha256(b"%d" % i).digest() for i in range(5))
    genesis = Genesis.from_allocations({i: 1 for i in ids[:4]} | {ids[4]: 2**32 - 5})
    expected = round_contents(0, 1, Ledger.from_genesis(genesis), b"")
    found = genesis_contents(genesis)
    assert list(found) == list(expected)  # the same files, in torrent order
    assert found == expected
