"""The balances file (§4) and BalanceTable, compared with a plain dict."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.balances import (
    BALANCE,
    BALANCE_OFFSET,
    RECORD,
    RECORD_BYTES,
    BalanceTable,
    check_balances_file,
    decode_balances,
    encode_balances,
    lookup,
)
from scryp.errors import MalformedInput


def record(account: bytes, balance: int) -> bytes:
    """Protocol §4.1 spelled out independently of the module: id (32) | balance (4, big-endian)."""
    return account + struct.pack(">I", balance)


def test_the_record_layout_is_declared_as_the_protocol_says() -> None:
    account = bytes(range(32))
    assert RECORD_BYTES == 36 and BALANCE_OFFSET == 32
    assert RECORD.pack(account, 0x01020304) == record(account, 0x01020304)
    assert RECORD.unpack(record(account, 7)) == (account, 7)
    assert BALANCE.unpack_from(record(account, 9), BALANCE_OFFSET) == (9,)


def test_file_layout_is_sorted_records_without_zeros() -> None:
    a, b, c = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    data = encode_balances([(c, 5), (a, 7), (b, 0)])
    assert data == record(a, 7) + record(c, 5)
    assert decode_balances(data) == [(a, 7), (c, 5)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01" * 35, "whole number"),
        (record(b"\x02" * 32, 1) + record(b"\x01" * 32, 1), "strictly increasing"),
        (record(b"\x01" * 32, 1) + record(b"\x01" * 32, 1), "strictly increasing"),
        (record(b"\x01" * 32, 0), "zero"),
    ],
)
def test_non_canonical_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(MalformedInput, match=message):
        check_balances_file(data)
    with pytest.raises(MalformedInput):
        BalanceTable(data)


def check_in_order(data: bytes) -> int | str:
    """The check as a pass over the records in order: the sum, or the first error."""
    previous, total = b"", 0
    for index in range(len(data) // 36):
        account, balance = data[36 * index : 36 * index + 32], data[36 * index + 32 :][:4]
        if account <= previous:
            return f"record {index}: ids are not strictly increasing"
        if balance == bytes(4):
            return f"record {index}: zero balances are dropped from the file"
        previous, total = account, total + int.from_bytes(balance, "big")
    return total


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            # Ids that end in NUL bytes or differ only there, and repeated ones.
            st.sampled_from([b"", b"\x00", b"\x01", b"\x00\x00", b"\xff"]).flatmap(
                lambda tail: st.binary(min_size=32 - len(tail), max_size=32 - len(tail)).map(
                    lambda head: (
                        head[:1] + bytes(len(head) - 1) + tail
                        if head and head[0] % 2
                        else head + tail
                    )
                )
            ),
            st.sampled_from([0, 1, 2**32 - 1, 12345]),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_the_vectorised_check_is_the_check_in_order(
    pairs: list[tuple[bytes, int]], sort: bool
) -> None:
    if sort:
        pairs = sorted(pairs)
    data = b"".join(record(account, balance) for account, balance in pairs)
    expected = check_in_order(data)
    if isinstance(expected, int):
        assert check_balances_file(data) == expected
    else:
        with pytest.raises(MalformedInput) as refused:
            check_balances_file(data)
        assert str(refused.value) == expected


def test_encode_refuses_duplicates_and_bad_fields() -> None:
    with pytest.raises(MalformedInput, match="twice"):
        encode_balances([(b"\x01" * 32, 1), (b"\x01" * 32, 2)])
    with pytest.raises(MalformedInput):
        encode_balances([(b"\x01" * 31, 1)])
    with pytest.raises(MalformedInput):
        encode_balances([(b"\x01" * 32, 2**32)])


# Ids drawn so that many share their first 8 bytes: the index must still find each one.
ids = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from([bytes(8), b"\x80" * 8, b"\xff" * 8]) | st.binary(min_size=8, max_size=8),
    st.binary(min_size=24, max_size=24),
)


@settings(max_examples=300)
@given(
    initial=st.dictionaries(ids, st.integers(1, 1000), max_size=12),
    operations=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 1500), st.booleans()),
        max_size=40,
    ),
    extra=st.lists(ids, max_size=6),
)
def test_table_matches_a_dict(
    initial: dict[bytes, int],
    operations: list[tuple[int, int, int, bool]],
    extra: list[bytes],
) -> None:
    table = BalanceTable(encode_balances(initial.items()))
    oracle = dict(initial)
    accounts = sorted(set(initial) | set(extra)) or [bytes(32)]
    for payer_pick, payee_pick, amount, compact in operations:
        payer = accounts[payer_pick % len(accounts)]
        payee = accounts[payee_pick % len(accounts)]
        if payer == payee:
            continue
        expected = oracle.get(payer, 0) >= amount
        assert table.transfer(payer, payee, amount) == expected
        if expected:
            oracle[payer] -= amount
            oracle[payee] = oracle.get(payee, 0) + amount
        for account in accounts:
            assert table.get(account) == oracle.get(account, 0)
        table.check()
        if compact:
            table.compact()
            table.check()
    assert table.total() == sum(oracle.values())
    assert len(table) == sum(1 for v in oracle.values() if v)
    assert table.balances_file() == encode_balances(oracle.items())
    for account in accounts:
        assert lookup(table.balances_file(), account) == oracle.get(account, 0)
    assert list(table.items()) == sorted((a, b) for a, b in oracle.items() if b)
    table.check()


@settings(max_examples=60, deadline=None)
@given(
    initial=st.dictionaries(ids, st.integers(1, 1000), max_size=12),
    operations=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 1500), st.booleans()),
        max_size=30,
    ),
    extra=st.lists(ids, max_size=6),
    bits=st.integers(0, 6),
)
def test_records_of_buckets_are_the_compacted_files_buckets(
    initial: dict[bytes, int],
    operations: list[tuple[int, int, int, bool]],
    extra: list[bytes],
    bits: int,
) -> None:
    """protocol §4.4.3: without compacting, the records of each bucket (ids whose first
    ``bits`` bits are its index) are exactly that bucket of the canonical file: new
    accounts inserted, emptied ones dropped, the last bucket included, whether or not the
    table was compacted (which moves the records) in between."""
    table = BalanceTable(encode_balances(initial.items()))
    accounts = sorted(set(initial) | set(extra)) or [bytes(32)]
    every = list(range(1 << bits))
    for payer_pick, payee_pick, amount, look in operations:
        payer, payee = accounts[payer_pick % len(accounts)], accounts[payee_pick % len(accounts)]
        if payer != payee:
            table.transfer(payer, payee, amount)
        if look:
            table.records_of_buckets(every, bits)  # caches where the buckets start
        if amount % 7 == 0:
            table.compact()
    found = table.records_of_buckets(every, bits)
    flat = table.balances_file()  # compacts
    for bucket, records in zip(every, found, strict=True):
        picked = [
            flat[i : i + RECORD_BYTES]
            for i in range(0, len(flat), RECORD_BYTES)
            if int.from_bytes(flat[i : i + 8], "big") >> (64 - bits) == bucket
        ]
        assert records == b"".join(picked)
    assert b"".join(found) == flat


def naive_check(data: bytes) -> int | str:
    """The check as the protocol words it (§4.1), one record at a time: the sum, or the
    first fault as "record I: ..." (an order fault wins over a zero in the same record)."""
    if len(data) % 36:
        return "whole number"
    previous, total = b"", 0
    for index in range(len(data) // 36):
        account, balance = (
            data[index * 36 : index * 36 + 32],
            data[index * 36 + 32 : index * 36 + 36],
        )
        if account <= previous:
            return f"record {index}: ids are not strictly increasing"
        if balance == bytes(4):
            return f"record {index}: zero balances"
        previous, total = account, total + int.from_bytes(balance, "big")
    return total


# Ids made of four 8-byte words from a tiny set: order decided by any of the four, ids that
# end in zero bytes, and repeated ids.
_word = st.sampled_from([bytes(8), b"\x01" * 8, b"\xff" * 8, bytes(7) + b"\x01"])
_ids = st.lists(st.lists(_word, min_size=4, max_size=4).map(b"".join), max_size=12)


@settings(max_examples=300, deadline=None)
@given(ids=_ids, balances=st.lists(st.integers(0, 3), min_size=12, max_size=12), sort=st.booleans())
def test_the_vectorised_check_finds_what_a_record_by_record_check_finds(
    ids: list[bytes], balances: list[int], sort: bool
) -> None:
    """Ids that end in zero bytes included: numpy's fixed-width byte strings drop trailing
    NULs when compared, which must not make two ids equal or misorder them."""
    check_in_chunks(ids, balances, sort)


def check_in_chunks(ids: list[bytes], balances: list[int], sort: bool) -> None:
    ordered = sorted(ids) if sort else ids
    data = b"".join(record(i, b) for i, b in zip(ordered, balances, strict=False))
    expected = naive_check(data)
    if isinstance(expected, int):
        assert check_balances_file(data) == expected
        assert BalanceTable(data).total() == expected
    else:
        with pytest.raises(MalformedInput, match=expected):
            check_balances_file(data)
