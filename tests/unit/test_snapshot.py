"""Round directory names and piece arithmetic (protocol §8.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core.balances import RECORD_BYTES
from scryp.core.snapshot import (
    CHECKPOINT_FILES,
    DELTA_FILES,
    PIECE_BYTES,
    ROUND_MAX,
    is_checkpoint,
    parse_round_dir_name,
    piece_range,
    round_dir_name,
    round_files,
)


def test_names() -> None:
    assert round_dir_name(42) == "round-0000000042"
    assert CHECKPOINT_FILES == ("balances", "changes", "transactions", "window")
    assert DELTA_FILES == ("changes", "transactions", "window")
    assert round_files(True) == CHECKPOINT_FILES and round_files(False) == DELTA_FILES
    assert [n for n in range(130) if is_checkpoint(n, 60)] == [0, 60, 120]
    assert PIECE_BYTES == 16384


@given(st.integers(min_value=0, max_value=ROUND_MAX))
def test_round_dir_names_round_trip_and_sort(number: int) -> None:
    assert parse_round_dir_name(round_dir_name(number)) == number
    if number < ROUND_MAX:
        assert round_dir_name(number) < round_dir_name(number + 1)


@pytest.mark.parametrize(
    "name", ["round-42", "round-00000000042", "Round-0000000042", "round-000000004x", ""]
)
def test_other_names_are_not_rounds(name: str) -> None:
    assert parse_round_dir_name(name) is None


@pytest.mark.parametrize("number", [-1, ROUND_MAX + 1])
def test_rounds_out_of_range(number: int) -> None:
    with pytest.raises(ValueError):
        round_dir_name(number)


def test_piece_range() -> None:
    assert piece_range(0, RECORD_BYTES) == range(0, 1)
    # A record straddling pieces: 16,384 bytes hold 455 whole records and 4 bytes of one more.
    assert piece_range(PIECE_BYTES - 10, RECORD_BYTES) == range(0, 2)
    assert piece_range(455 * RECORD_BYTES, RECORD_BYTES) == range(0, 2)
    assert piece_range(456 * RECORD_BYTES, RECORD_BYTES) == range(1, 2)
    with pytest.raises(ValueError):
        piece_range(0, 0)
