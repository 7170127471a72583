"""Codec of Raft entries and messages: exact round trips, and a peer's bad bytes never crash.

Method: round-trip every message kind; then mutate valid frames (truncate, extend, flip bits)
and feed random bytes, requiring either a clean ``MalformedInput`` or, where the checksum was
recomputed, a message that re-encodes to the same bytes.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.raft.codec import decode_message, encode_message
from scryp.core.raft.entries import (
    Entry,
    NoOp,
    Payments,
    Seal,
    SnapshotMeta,
    decode_entry,
    encode_entry,
    encoded_entry_bytes,
)
from scryp.core.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUp,
    Message,
    RequestVote,
    VoteResponse,
)
from scryp.errors import MalformedInput

TX = bytes(range(140))
META = SnapshotMeta(index=40, term=3, round=7, stamp_ms=7_000, state_root=b"\x11" * 32)
ENTRIES = (
    Entry(term=2, index=5, stamp_ms=1_000, payload=NoOp()),
    Entry(term=2, index=6, stamp_ms=1_010, payload=Payments((TX, TX[::-1]))),
    Entry(term=3, index=7, stamp_ms=1_500, payload=Seal(round=2)),
)
MESSAGES: list[Message] = [
    RequestVote(term=4, source=1, target=2, last_log_index=9, last_log_term=3),
    VoteResponse(term=4, source=2, target=1, granted=True),
    VoteResponse(term=4, source=2, target=1, granted=False),
    AppendEntries(
        term=3,
        source=0,
        target=1,
        prev_log_index=4,
        prev_log_term=1,
        entries=ENTRIES,
        leader_commit=5,
    ),
    AppendEntries(
        term=3, source=0, target=1, prev_log_index=4, prev_log_term=1, entries=(), leader_commit=5
    ),
    AppendResponse(term=3, source=1, target=0, success=False, match_index=3),
    CatchUp(term=5, source=0, target=6, snapshot=META),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip(message: Message) -> None:
    frame = encode_message(message)
    assert decode_message(frame) == message
    assert encode_message(decode_message(frame)) == frame


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: type(e.payload).__name__)
def test_entries_round_trip_and_size(entry: Entry) -> None:
    data = encode_entry(entry)
    assert decode_entry(data) == entry
    assert encoded_entry_bytes(entry) == len(data)


def test_a_flipped_bit_is_caught_by_the_checksum() -> None:
    frame = encode_message(MESSAGES[3])
    for position in range(len(frame)):
        corrupted = frame[:position] + bytes([frame[position] ^ 0x40]) + frame[position + 1 :]
        with pytest.raises(MalformedInput):
            decode_message(corrupted)


def _reframe(body: bytes) -> bytes:
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


def test_bodies_that_break_the_layout_are_refused_even_with_a_good_checksum() -> None:
    body = encode_message(MESSAGES[3])[8:]
    for cut in range(len(body)):
        with pytest.raises(MalformedInput):
            decode_message(_reframe(body[:cut]))
    with pytest.raises(MalformedInput):
        decode_message(_reframe(body + b"\x00"))
    with pytest.raises(MalformedInput):
        decode_message(_reframe(b"\x09" + body[1:]))  # unknown kind


def test_entries_out_of_order_are_refused() -> None:
    swapped = (ENTRIES[1], ENTRIES[0])
    with pytest.raises(MalformedInput):
        decode_message(encode_message(AppendEntries(3, 0, 1, 4, 1, swapped, 5)))
    newer = (Entry(term=9, index=5, stamp_ms=0, payload=NoOp()),)  # term beyond the leader's
    with pytest.raises(MalformedInput):
        decode_message(encode_message(AppendEntries(3, 0, 1, 4, 1, newer, 5)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bodies_decode_or_raise_malformed(body: bytes) -> None:
    try:
        message = decode_message(_reframe(body))
    except MalformedInput:
        return
    assert encode_message(message) == _reframe(body)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10), st.binary(min_size=1, max_size=8), st.integers(0, 400))
def test_spliced_valid_bodies_decode_or_raise_malformed(
    which: int, junk: bytes, position: int
) -> None:
    body = encode_message(MESSAGES[which % len(MESSAGES)])[8:]
    position %= len(body)
    spliced = body[:position] + junk + body[position + len(junk) :]
    try:
        message = decode_message(_reframe(spliced))
    except MalformedInput:
        return
    assert encode_message(message) == _reframe(spliced)
