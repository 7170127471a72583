"""Light sync's search on a skewed file (protocol §10.3): when interpolation guesses badly the
search must bisect and still find every record. Account ids are ed25519 keys and so spread
evenly in practice; a file whose ids all share a long zero prefix defeats interpolation, so
these tests reach the bisection that a uniform file never needs (a search that gives up and
answers 0 there fails them)."""

from __future__ import annotations

import asyncio
import hashlib

from scryp.client.search import INTERPOLATION_PROBES_MAX, find_balance
from scryp.core.balances import encode_balances
from scryp.core.snapshot import PIECE_BYTES

ACCOUNTS = 20_000  # 720,000 bytes: 44 pieces


def skewed_id(i: int) -> bytes:
    """Ids in [0, 2^192): interpolation over the whole id space guesses index 0 for all."""
    return bytes(8) + hashlib.sha256(b"skewed %d" % i).digest()[:24]


def search(data: bytes, account: bytes) -> tuple[int, int]:
    fetched: set[int] = set()

    async def fetch(pieces: set[int]) -> None:
        fetched.update(pieces)

    def read(offset: int, length: int) -> bytes:
        last = (offset + length - 1) // PIECE_BYTES
        assert all(p in fetched for p in range(offset // PIECE_BYTES, last + 1))
        return data[offset : offset + length]

    return asyncio.run(find_balance(len(data), account, fetch, read))


def test_a_skewed_file_is_searched_by_bisection() -> None:
    records = sorted((skewed_id(i), 1 + i) for i in range(ACCOUNTS))
    data = encode_balances(records)
    deepest = 0
    for at in range(0, ACCOUNTS, 401):
        account, balance = records[at]
        found, probes = search(data, account)
        assert found == balance, f"record {at}"
        deepest = max(deepest, probes)
    assert deepest > INTERPOLATION_PROBES_MAX, "the bisection was never reached"


def test_an_absent_account_in_a_skewed_file_is_zero() -> None:
    records = sorted((skewed_id(i), 1 + i) for i in range(ACCOUNTS))
    data = encode_balances(records)
    absent = bytes(8) + b"\x7f" * 24
    assert absent not in {account for account, _ in records}
    assert search(data, absent)[0] == 0
