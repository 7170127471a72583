"""Peer frames (protocol §9.3): the share layout, byte for byte, as an independent spelling of
the protocol; forwards of whole payments only; asks; and nothing else decodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core.snapshot import ROUND_MAX
from scryp.core.wire import (
    FORWARD_TXS_MAX,
    Ask,
    Forward,
    PeerFrame,
    RaftFrame,
    Share,
    decode_frame,
    encode_frame,
)
from scryp.errors import MalformedInput

SHARE = Share(
    round=0x0000000102030405,
    state_root=bytes(range(32)),
    infohash=bytes(range(100, 120)),
    infohash_v2=bytes(range(200, 232)),
    signature=bytes(range(64)),
    torrent_port=6881,
)


def test_the_share_layout_is_the_protocols() -> None:
    """0x03 | round (8) | state root (32) | v1 (20) | v2 (32) | signature (64) | port (2)."""
    expected = (
        b"\x03"
        + bytes.fromhex("0000000102030405")
        + bytes(range(32))
        + bytes(range(100, 120))
        + bytes(range(200, 232))
        + bytes(range(64))
        + (6881).to_bytes(2, "big")
    )
    assert encode_frame(SHARE) == expected
    assert decode_frame(expected) == SHARE


def test_a_forward_carries_whole_payments_only() -> None:
    two = bytes(140) + bytes([1]) * 140
    assert decode_frame(b"\x02" + two) == Forward((bytes(140), bytes([1]) * 140))
    for partial in (bytes(139), bytes(141), two[:-1]):
        with pytest.raises(MalformedInput, match="whole transactions"):
            decode_frame(b"\x02" + partial)
    with pytest.raises(MalformedInput):
        decode_frame(b"\x02" + bytes(140 * (FORWARD_TXS_MAX + 1)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x05",
        b"\xff",
        b"\x03" + bytes(157),
        b"\x03" + bytes(159),
        b"\x04" + bytes(7),
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        decode_frame(data)


def test_an_ask_is_a_round() -> None:
    assert encode_frame(Ask(9)) == b"\x04" + (9).to_bytes(8, "big")


FRAMES = st.one_of(
    st.builds(RaftFrame, st.binary(max_size=64)),
    st.builds(Forward, st.lists(st.binary(min_size=140, max_size=140), max_size=3).map(tuple)),
    st.builds(
        Share,
        st.integers(0, ROUND_MAX),
        st.binary(min_size=32, max_size=32),
        st.binary(min_size=20, max_size=20),
        st.binary(min_size=32, max_size=32),
        st.binary(min_size=64, max_size=64),
        st.integers(0, 65535),
    ),
    st.builds(Ask, st.integers(0, ROUND_MAX)),
)


@given(FRAMES)
def test_every_frame_round_trips(frame: PeerFrame) -> None:
    assert decode_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize("frame", [Ask(10**10), Ask(2**64 - 1)])
def test_a_round_no_server_can_hold_is_refused(frame: PeerFrame) -> None:
    """Regression (review): Ask(2^64-1) reached the round store, whose directory names hold
    10 digits, and the ValueError there stopped the server."""
    with pytest.raises(MalformedInput, match="beyond"):
        decode_frame(encode_frame(frame))
    share = Share(10**10, bytes(32), bytes(20), bytes(32), bytes(64))
    with pytest.raises(MalformedInput, match="beyond"):
        decode_frame(encode_frame(share))
