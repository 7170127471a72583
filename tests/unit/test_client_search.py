"""Light sync's search (protocol §10.3): it finds every account's record, reports absent
accounts as 0, and fetches few pieces."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.client.search import find_balance
from scryp.core.balances import encode_balances
from scryp.core.snapshot import PIECE_BYTES
from scryp.errors import MalformedInput


def balances(count: int) -> bytes:
    return encode_balances((hashlib.sha256(b"acct %d" % i).digest(), 1 + i) for i in range(count))


def search(data: bytes, account: bytes) -> tuple[int, int, set[int]]:
    fetched: set[int] = set()

    async def fetch(pieces: set[int]) -> None:
        fetched.update(pieces)

    def read(offset: int, length: int) -> bytes:
        for piece in range(offset // PIECE_BYTES, (offset + length - 1) // PIECE_BYTES + 1):
            assert piece in fetched, "read a piece that was not fetched"
        return data[offset : offset + length]

    balance, probes = asyncio.run(find_balance(len(data), account, fetch, read))
    return balance, probes, fetched


def test_finds_present_accounts_with_few_pieces() -> None:
    data = balances(20_000)  # 720,000 bytes, 44 pieces
    for i in range(0, 20_000, 997):
        balance, probes, fetched = search(data, hashlib.sha256(b"acct %d" % i).digest())
        assert balance == 1 + i
        assert len(fetched) <= 4 and probes <= 4


def test_absent_accounts_and_the_ends_of_the_id_space() -> None:
    data = balances(5_000)
    for account in (bytes(32), b"\xff" * 32, hashlib.sha256(b"nobody").digest()):
        assert search(data, account)[0] == 0
    assert search(b"", bytes(32))[0] == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=3_000), st.integers(min_value=0, max_value=10**6))
def test_any_size_and_any_account(count: int, which: int) -> None:
    data = balances(count)
    index = which % count
    assert search(data, hashlib.sha256(b"acct %d" % index).digest())[0] == 1 + index


def test_skewed_ids_fall_back_to_bisection() -> None:
    # All ids in a tiny corner of the space: interpolation guesses badly, bisection finishes.
    data = encode_balances((bytes(31) + bytes([i]), 7) for i in range(1, 256))
    data += encode_balances([(b"\xff" * 32, 9)])
    assert search(data, bytes(31) + bytes([200]))[0] == 7
    assert search(data, b"\xff" * 32)[0] == 9


def test_a_file_that_is_not_whole_records_is_refused() -> None:
    with pytest.raises(MalformedInput):
        search(b"x" * 37, bytes(32))
