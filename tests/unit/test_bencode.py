"""Canonical bencode (protocol §8.3): round trips, and strict refusal of everything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core.bencode import MAX_DEPTH, Value, decode, encode
from scryp.errors import MalformedInput

values: st.SearchStrategy[Value] = st.recursive(
    st.integers() | st.binary(max_size=64),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.binary(max_size=16), children, max_size=5)
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip(value: Value) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.binary(max_size=64))
def test_decode_never_raises_anything_but_malformed_input(data: bytes) -> None:
    try:
        value = decode(data)
    except MalformedInput:
        return
    assert encode(value) == data  # anything accepted is canonical


@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(value: Value, tail: bytes) -> None:
    with pytest.raises(MalformedInput):
        decode(encode(value) + tail)


def test_known_encodings() -> None:
    assert encode(0) == b"i0e"
    assert encode(-42) == b"i-42e"
    assert encode(b"spam") == b"4:spam"
    assert encode([b"a", 1]) == b"l1:ai1ee"
    assert encode({b"b": 1, b"a": b""}) == b"d1:a0:1:bi1ee"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i01e",  # leading zero
        b"i-0e",  # negative zero
        b"ie",
        b"i-e",
        b"i1",  # unterminated
        b"i+1e",
        b"i 1e",
        b"02:ab",  # leading zero in a length
        b"-1:a",
        b"3:ab",  # runs past the end
        b"5spam",
        b"l",
        b"li1e",
        b"d1:bi1e1:ai2ee",  # unsorted keys
        b"d1:ai1e1:ai2ee",  # duplicate key
        b"di1ei2ee",  # non-string key
        b"d1:ae",  # key without value
        b"x",
        b"i1ei2e",
    ],
)
def test_non_canonical_input_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        decode(data)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(MalformedInput, match="nested"):
        decode(b"l" * (MAX_DEPTH + 2) + b"e" * (MAX_DEPTH + 2))
    with pytest.raises(MalformedInput):
        decode(b"l" * 100_000)


@pytest.mark.parametrize("value", [True, "text", 1.5, None, {"k": 1}, (1,)])
def test_encode_refuses_non_values(value: object) -> None:
    with pytest.raises(TypeError):
        encode(value)  # type: ignore[arg-type]
